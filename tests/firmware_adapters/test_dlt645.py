"""DL/T 645-2007: byte tables, fuzzing, our simulator, and the independent ``dlt645`` package."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_adapters import dlt645
from firmware_adapters.drivers import Dlt645Driver, NoAnswer
from firmware_adapters.serial_transport import SerialTransport
from simulators.null_modem import NullModem
from simulators.pty_bus import Dlt645Meter, Faults, PtyBus, dlt645_bus

ALL = {"energy": "energy_total", "voltage": "voltage_a", "current": "current_a", "power": "power_total"}


# -- byte tables ---------------------------------------------------------------------------


@pytest.mark.unit
def test_read_address_broadcast_is_the_textbook_frame() -> None:
    # The frame every DL/T 645-2007 integration guide starts with.
    assert dlt645.read_address_request() == bytes.fromhex("FEFEFEFE 68AAAAAAAAAAAA68 1300 DF16")


@pytest.mark.unit
@pytest.mark.parametrize(("address", "di", "frame"), [
    # address 123456789012 is sent A0 first: 12 90 78 56 34 12; DI 00 01 00 00 as 00 00 01 00, +33h each
    ("123456789012", 0x00010000, "68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16"),
    # phase A voltage 02 01 01 00 -> 00 01 01 02 -> 33 34 34 35
    ("000000000001", 0x02010100, "68 01 00 00 00 00 00 68 11 04 33 34 34 35 B6 16"),
])
def test_read_request_bytes(address: str, di: int, frame: str) -> None:
    assert dlt645.read_request(address, di) == dlt645.WAKE_UP + bytes.fromhex(frame)


@pytest.mark.unit
@pytest.mark.parametrize(("name", "value", "raw"), [
    ("energy_total", 12345.67, "67 45 23 01"),
    ("voltage_a", 220.1, "01 22"),
    ("current_a", 5.123, "23 51 00"),
    ("current_a", -5.123, "23 51 80"),  # sign in the top bit of the last byte
    ("power_total", 1.2345, "45 23 01"),
])
def test_bcd_values(name: str, value: float, raw: str) -> None:
    q = dlt645.QUANTITIES[name]
    assert dlt645.encode_value(q, value) == bytes.fromhex(raw)
    assert dlt645.decode_value(q, bytes.fromhex(raw)) == pytest.approx(value)


@pytest.mark.unit
def test_normal_reply_round_trip_and_offset() -> None:
    q = dlt645.QUANTITIES["energy_total"]
    raw = dlt645.read_reply("000000000007", q, 12345.67)
    # data on the wire: DI 00 00 00 00 +33 = 33 33 33 33, value 67 45 23 01 +33 = 9A 78 56 34
    assert bytes.fromhex("33333333 9A785634") in raw
    wake = dlt645.decode(raw)
    assert (wake.used, wake.frame, wake.error) == (4, None, None)  # wake-up bytes: skipped, not garbage
    d = dlt645.decode(raw[4:])
    assert d.frame is not None and d.used == len(raw) - 4
    assert dlt645.parse_read_reply(d.frame, "000000000007", q) == pytest.approx(12345.67)


@pytest.mark.unit
def test_abnormal_reply_names_the_reason() -> None:
    raw = dlt645.error_reply("000000000007", dlt645.READ_DATA, 0x02)
    frame = _decode_all(raw)[0]
    assert frame.control == 0xD1
    with pytest.raises(dlt645.FrameError, match="no such data") as err:
        dlt645.parse_read_reply(frame, "000000000007", dlt645.QUANTITIES["voltage_a"])
    assert err.value.reason == "meter-error"
    assert dlt645.describe_error(0x05) == "other error; wrong password or not authorised"


@pytest.mark.unit
def test_bad_checksum_and_garbage_are_named_and_a_later_frame_still_found() -> None:
    good = dlt645.read_reply("000000000001", dlt645.QUANTITIES["voltage_a"], 230.0)
    bad = bytearray(good)
    bad[-2] ^= 0xFF
    frames, errors = _decode_stream(b"\x00\x01garbage" + bytes(bad) + good)
    assert [f.address for f in frames] == ["000000000001"]
    assert errors["checksum"] == 1 and errors["garbage"] >= 1


def _decode_stream(buf: bytes) -> tuple[list[dlt645.Frame], dict[str, int]]:
    frames, errors = [], {}
    while buf:
        d = dlt645.decode(buf)
        if d.used == 0:
            break
        assert 0 < d.used <= len(buf)
        buf = buf[d.used:]
        if d.frame:
            frames.append(d.frame)
        elif d.error:
            errors[d.error] = errors.get(d.error, 0) + 1
    return frames, errors


def _decode_all(buf: bytes) -> list[dlt645.Frame]:
    return _decode_stream(buf)[0]


# -- fuzz: no input makes the framer raise or stall ----------------------------------------


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(buf: bytes) -> None:
    _decode_stream(buf)


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.sampled_from(list(dlt645.QUANTITIES)), st.floats(0, 79), st.integers(0, 10**12 - 1), st.data())
def test_fuzz_bit_flipped_and_truncated_replies(name: str, value: float, addr: int, data: st.DataObject) -> None:
    address = f"{addr:012d}"
    q = dlt645.QUANTITIES[name]
    raw = bytearray(dlt645.read_reply(address, q, value))
    flips = data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), max_size=3))
    for bit in flips:
        raw[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(raw)))
    for frame in _decode_all(bytes(raw[:cut])):
        try:  # a frame that survives the checksum may still be unusable; that is a FrameError, nothing else
            dlt645.parse_read_reply(frame, address, q)
        except dlt645.FrameError:
            pass


# -- our driver and our simulator over a real pseudo-terminal ------------------------------


def _driver(port: str, address: str, **kw: float) -> tuple[Dlt645Driver, SerialTransport]:
    transport = SerialTransport(port, 9600, timeout_s=0.05)  # ptys refuse parity (EINVAL)
    return Dlt645Driver(transport, address, ALL, **kw), transport  # type: ignore[arg-type]


@pytest.mark.real
def test_driver_polls_a_bus_of_meters_and_energy_only_increases() -> None:
    with dlt645_bus(4, baudrate=115200) as bus:
        drivers = [_driver(bus.port, f"{i:012d}")[0] for i in (1, 2, 3, 4)]
        try:
            first = [d.poll().values for d in drivers]
            time.sleep(0.2)
            second = [d.poll().values for d in drivers]
        finally:
            for d in drivers:
                d.transport.close()
    for a, b in zip(first, second, strict=True):
        assert set(a) == set(ALL)
        assert b["energy"] >= a["energy"] > 0
        assert 200 < a["voltage"] < 240
    assert bus.counters.replies == 32


@pytest.mark.real
def test_faults_are_counted_and_retried_never_raised_out_of_poll() -> None:
    meter = Dlt645Meter("000000000042", seed=1, faults=Faults(bad_checksum=0.3, garbage=0.3, wrong_address=0.2))
    with PtyBus("dlt645", [meter], baudrate=115200, seed=7) as bus:
        driver, transport = _driver(bus.port, "000000000042", timeout_s=0.05, retries=3)
        try:
            reads = [driver.poll() for _ in range(10)]
        finally:
            transport.close()
    good = sum(len(r.values) for r in reads)
    assert good >= 34  # 40 points asked; with 3 retries nearly all succeed
    errors = driver.counters.errors
    assert errors.get("checksum", 0) > 0 and errors.get("garbage", 0) > 0 and errors.get("not-for-us", 0) > 0
    assert bus.counters.faults["bad_checksum"] > 0


@pytest.mark.real
def test_a_silent_meter_is_no_answer_after_bounded_retries() -> None:
    meter = Dlt645Meter("000000000009", seed=1, faults=Faults(no_answer=True))
    with PtyBus("dlt645", [meter]) as bus:
        driver, transport = _driver(bus.port, "000000000009", timeout_s=0.05, retries=2)
        try:
            with pytest.raises(NoAnswer, match="000000000009"):
                driver.poll()
        finally:
            transport.close()
    assert driver.counters.errors["timeout"] == 3 * len(ALL)


@pytest.mark.real
def test_an_unsupported_quantity_is_a_per_point_error_with_the_meters_reason() -> None:
    meter = Dlt645Meter("000000000005", seed=1)
    meter.unsupported.add(dlt645.QUANTITIES["current_a"].di)
    with PtyBus("dlt645", [meter], baudrate=115200) as bus:
        driver, transport = _driver(bus.port, "000000000005")
        try:
            read = driver.poll()
        finally:
            transport.close()
    assert set(read.values) == {"energy", "voltage", "power"}
    assert "no such data" in read.errors["current"]


@pytest.mark.real
def test_read_address_of_the_only_meter() -> None:
    with dlt645_bus(1, first_address=123456, baudrate=115200) as bus:
        transport = SerialTransport(bus.port, 9600, timeout_s=0.05)
        try:
            assert Dlt645Driver(transport, "000000000000", {}).read_address() == "000000123456"
        finally:
            transport.close()


# -- the independent implementation: the dlt645 package ------------------------------------


@pytest.mark.real
def test_our_driver_reads_the_dlt645_packages_meter() -> None:
    from dlt645 import MeterServerService

    with NullModem() as cable:
        server = MeterServerService.new_rtu_server(cable.port_a, 8, 1, 9600, "N", 1.0)
        server.set_address(bytes.fromhex("123456789012")[::-1])
        server.set_00(0x00000000, 12345.67)
        server.set_02(0x02010100, 220.5)
        server.set_02(0x02020100, 3.456)
        server.set_02(0x02030000, 0.7612)
        assert server.server.start()
        try:
            driver, transport = _driver(cable.port_b, "123456789012", timeout_s=1.0)
            try:
                read = driver.poll()
            finally:
                transport.close()
        finally:
            server.server.stop()
    assert read.values == pytest.approx({"energy": 12345.67, "voltage": 220.5, "current": 3.456, "power": 0.7612})


@pytest.mark.real
def test_the_dlt645_packages_client_reads_our_simulated_meter() -> None:
    from dlt645 import MeterClientService

    meter = Dlt645Meter("000000000077", seed=3)
    with PtyBus("dlt645", [meter]) as bus:
        client = MeterClientService.new_rtu_client(port=bus.port, baudrate=9600, databits=8, stopbits=1,
                                                   parity="N", timeout=1.0)  # ptys refuse parity
        assert client.connect()
        try:
            address = client.read_address()  # the client then addresses the meter it found
            energy = client.read_00(0x00000000)
            voltage = client.read_02(0x02010100)
            current = client.read_02(0x02020100)
        finally:
            client.disconnect()
    assert address is not None and bus.counters.requests == 4
    assert energy is not None and meter.energy - 0.1 <= float(energy.value) <= meter.energy  # it only grows
    assert voltage is not None and 200 < float(voltage.value) < 240
    assert current is not None and 0 < float(current.value) < 100
