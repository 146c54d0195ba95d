"""CJ/T 188-2004: byte tables, fuzzing, and our driver against our simulated water meters."""

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_adapters import cjt188
from firmware_adapters.drivers import Cjt188Driver, NoAnswer
from firmware_adapters.serial_transport import SerialTransport
from simulators.pty_bus import Cjt188Meter, Faults, PtyBus, cjt188_bus

WHEN = datetime(2026, 11, 27, 3, 15, 42)


@pytest.mark.unit
def test_read_request_bytes() -> None:
    # cold-water meter 12345678901234: address sent A0 first; C=01 L=03 DI=90 1F SER=00
    expected = "FEFE 68 10 34 12 90 78 56 34 12 01 03 90 1F 00"
    body = bytes.fromhex(expected)[2:]
    assert cjt188.read_request(0x10, "12345678901234") == bytes.fromhex(expected) + bytes((sum(body) & 0xFF, 0x16))


@pytest.mark.unit
def test_metering_reply_layout_and_round_trip() -> None:
    raw = cjt188.metering_reply(0x10, "00000000000001", 5, 1234.56, 1200.0, WHEN, "closed", battery_low=True)
    frames = _frames(raw)
    assert len(frames) == 1 and frames[0].control == 0x81 and len(frames[0].data) == 0x16
    data = frames[0].data
    assert data[3:8] == bytes.fromhex("56 34 12 00 2C")  # 123456 hundredths of m³, unit 2Ch = m³
    assert data[13:20] == bytes.fromhex("42 15 03 27 11 26 20")  # ss mm hh DD MM YYYY, BCD, low first
    assert data[20] == 0b101  # valve closed (01), battery low (bit 2)
    m = cjt188.parse_metering(frames[0], "00000000000001")
    assert (m.total_m3, m.settlement_m3, m.meter_time, m.valve, m.battery_low) == (1234.56, 1200.0, WHEN, "closed", True)


@pytest.mark.unit
def test_abnormal_reply_and_wrong_address_are_named() -> None:
    frame = _frames(cjt188.error_reply(0x10, "00000000000001", 1, "abnormal", battery_low=True))[0]
    with pytest.raises(cjt188.FrameError, match="valve abnormal, battery low"):
        cjt188.parse_metering(frame, "00000000000001")
    ok = _frames(cjt188.metering_reply(0x10, "00000000000002", 0, 1.0, 1.0, WHEN))[0]
    with pytest.raises(cjt188.FrameError) as err:
        cjt188.parse_metering(ok, "00000000000001")
    assert err.value.reason == "wrong-address"


@pytest.mark.unit
@pytest.mark.parametrize(("t", "family"), [(0x10, "water"), (0x13, "water"), (0x20, "heat"), (0x30, "gas"),
                                           (0x49, "custom")])
def test_meter_type_families(t: int, family: str) -> None:
    assert cjt188.meter_family(t) == family


@pytest.mark.unit
def test_meter_type_outside_the_families_is_refused() -> None:
    with pytest.raises(ValueError, match="outside 10h-49h"):
        cjt188.meter_family(0x50)


def _frames(buf: bytes) -> list[cjt188.Frame]:
    out = []
    while buf:
        d = cjt188.decode(buf)
        if d.used == 0:
            break
        assert 0 < d.used <= len(buf)
        buf = buf[d.used:]
        if d.frame:
            out.append(d.frame)
    return out


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(buf: bytes) -> None:
    _frames(buf)


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.floats(0, 999999), st.integers(0, 10**14 - 1), st.data())
def test_fuzz_bit_flipped_and_truncated_replies(total: float, addr: int, data: st.DataObject) -> None:
    address = f"{addr:014d}"
    raw = bytearray(cjt188.metering_reply(0x10, address, 1, total, total, WHEN))
    for bit in data.draw(st.lists(st.integers(0, len(raw) * 8 - 1), max_size=3)):
        raw[bit // 8] ^= 1 << (bit % 8)
    for frame in _frames(bytes(raw[:data.draw(st.integers(0, len(raw)))])):
        try:
            cjt188.parse_metering(frame, address)
        except cjt188.FrameError:
            pass


@pytest.mark.real
def test_driver_reads_a_bus_of_water_meters_over_a_real_pty() -> None:
    with cjt188_bus(3, baudrate=115200) as bus:
        transports = [SerialTransport(bus.port, 2400, timeout_s=0.05) for _ in range(3)]
        drivers = [Cjt188Driver(t, 0x10, f"{i + 1:014d}") for i, t in enumerate(transports)]
        try:
            reads = [d.poll().values for d in drivers]
        finally:
            for t in transports:
                t.close()
    assert all(r["valve_open"] == 1.0 and r["battery_low"] == 0.0 and r["total_m3"] > 0 for r in reads)
    assert bus.counters.replies == 3


@pytest.mark.unit
def test_a_leak_is_continuous_night_flow() -> None:
    normal, leaking = Cjt188Meter("00000000000001", 1), Cjt188Meter("00000000000002", 1, leak=True)
    night = [h + 0.5 for h in (0, 1, 2, 3, 4, 23)]
    assert all(normal.flow_lpm(h) == 0 for h in night)
    assert all(leaking.flow_lpm(h) > 0 for h in night)


@pytest.mark.real
def test_faults_are_counted_and_a_dead_meter_is_no_answer() -> None:
    flaky = Cjt188Meter("00000000000001", 1, faults=Faults(bad_checksum=0.3, garbage=0.3))
    dead = Cjt188Meter("00000000000002", 2, faults=Faults(no_answer=True))
    with PtyBus("cjt188", [flaky, dead], baudrate=115200, seed=3) as bus:
        transport = SerialTransport(bus.port, 2400, timeout_s=0.05)
        try:
            driver = Cjt188Driver(transport, 0x10, "00000000000001", timeout_s=0.05, retries=3)
            reads = [driver.poll() for _ in range(10)]
            silent = Cjt188Driver(transport, 0x10, "00000000000002", timeout_s=0.05, retries=1)
            with pytest.raises(NoAnswer):
                silent.poll()
        finally:
            transport.close()
    assert sum("total_m3" in r.values for r in reads) == 10
    assert driver.counters.errors.get("checksum", 0) + driver.counters.errors.get("garbage", 0) > 0
    assert silent.counters.errors["timeout"] == 2
