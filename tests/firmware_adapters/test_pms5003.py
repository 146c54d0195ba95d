"""PMS5003 framer: byte tables from the datasheet, fuzzing, and a real pseudo-terminal."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_adapters import pms5003
from firmware_adapters.drivers import NoAnswer, Pms5003Driver
from firmware_adapters.serial_transport import SerialTransport, TransportError
from simulators.pty_pms5003 import PtyPms5003

READING = pms5003.Reading(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
FRAME = bytes.fromhex("424d001c000100020003000400050006000700080009000a000b000c000000f9")
ACK = bytes.fromhex("424d0004e1000174")  # passive mode set


@pytest.mark.unit
@pytest.mark.parametrize(("command", "expected"), [
    # Host commands as printed in the Plantower PMS5003 datasheet (appendix II).
    (pms5003.READ_PASSIVE, "424de200000171"),
    (pms5003.MODE_PASSIVE, "424de100000170"),
    (pms5003.MODE_ACTIVE, "424de100010171"),
    (pms5003.encode_command(pms5003.CMD_SLEEP, 0), "424de400000173"),
    (pms5003.encode_command(pms5003.CMD_SLEEP, 1), "424de400010174"),
])
def test_commands_match_the_datasheet(command: bytes, expected: str) -> None:
    assert command.hex() == expected


@pytest.mark.unit
@pytest.mark.parametrize(("cmd", "data", "expected"), [
    # Acknowledgements as printed in the Plantower PMS7003 manual (appendix II).
    (pms5003.CMD_MODE, 0, "424d0004e1000174"),  # passive mode set
    (pms5003.CMD_MODE, 1, "424d0004e1010175"),  # active mode set
    (pms5003.CMD_SLEEP, 0, "424d0004e4000177"),  # going to sleep
])
def test_acknowledgements_match_the_manual_and_decode_as_acks(cmd: int, data: int, expected: str) -> None:
    assert pms5003.encode_ack(cmd, data).hex() == expected
    assert pms5003.decode(bytes.fromhex(expected)) == pms5003.Decoded(8, ack=(cmd, data))


@pytest.mark.unit
def test_frame_layout_and_checksum() -> None:
    assert pms5003.encode_reading(READING) == FRAME
    assert pms5003.decode(FRAME) == pms5003.Decoded(32, reading=READING)


@pytest.mark.unit
@pytest.mark.parametrize(("buf", "used", "error"), [
    (b"", 0, None),
    (FRAME[:10], 0, None),  # partial: need more
    (b"\x00\x11" + FRAME, 2, "garbage"),
    (b"\x00\x42", 1, "garbage"),  # keep a trailing 0x42: it may start a frame
    (FRAME[:30] + b"\x00\x00", 1, "checksum"),
    (b"BM\x00\x05" + FRAME[4:], 1, "bad-length"),
    (ACK[:7], 0, None),  # partial acknowledgement: need more
    (ACK[:7] + b"\x00", 1, "checksum"),
])
def test_decode_table(buf: bytes, used: int, error: str | None) -> None:
    result = pms5003.decode(buf)
    assert (result.used, result.error) == (used, error)


@pytest.mark.unit
def test_resynchronises_on_a_frame_inside_garbage() -> None:
    buf = b"BM\x00\x1c\x99" + FRAME
    readings = []
    while buf:
        r = pms5003.decode(buf)
        if r.used == 0:
            break
        buf = buf[r.used:]
        if r.reading:
            readings.append(r.reading)
    assert readings == [READING]


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_raise_and_always_progress(buf: bytes) -> None:
    while buf:
        r = pms5003.decode(buf)
        if r.used == 0:
            assert len(buf) < pms5003.FRAME_LEN
            break
        assert sum(x is not None for x in (r.reading, r.ack, r.error)) == 1
        buf = buf[r.used:]


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=31), st.integers(min_value=0, max_value=7))
def test_fuzz_any_single_bit_flip_is_caught(byte: int, bit: int) -> None:
    corrupted = bytearray(FRAME)
    corrupted[byte] ^= 1 << bit
    # A single flipped bit changes the 16-bit sum by a non-zero amount: never a reading.
    assert pms5003.decode(bytes(corrupted)).reading is None


@pytest.mark.unit
@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=31))
def test_fuzz_truncated_frames_need_more(n: int) -> None:
    assert pms5003.decode(FRAME[:n]).used == 0


class _Line:
    """A scripted serial line: each read returns the next chunk, as the UART delivered it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def read(self, size: int) -> bytes:
        return self.read_some(size)

    def read_some(self, limit: int) -> bytes:
        return self.chunks.pop(0)[:limit] if self.chunks else b""

    def reset_input(self) -> None:
        pass  # a late acknowledgement arrives after the flush: that is the case under test

    def close(self) -> None:
        pass


@pytest.mark.unit
def test_driver_skips_an_acknowledgement_and_stays_in_step() -> None:
    line = _Line([ACK + FRAME, ACK + FRAME[:5], FRAME[5:]])
    driver = Pms5003Driver(line, timeout_s=0.05, retries=0)  # type: ignore[arg-type]
    values = [driver.poll().values, driver.poll().values]
    assert values == [{"pm1_0": 4.0, "pm2_5": 5.0, "pm10": 6.0}] * 2
    assert driver.counters.frames == 2 and driver.counters.errors == {}


@pytest.mark.unit
def test_driver_skips_an_acknowledgement_split_across_reads() -> None:
    sleep_ack = pms5003.encode_ack(pms5003.CMD_SLEEP, 0)
    line = _Line([ACK[:3], ACK[3:] + sleep_ack[:6], sleep_ack[6:] + FRAME[:20], FRAME[20:]])
    driver = Pms5003Driver(line, timeout_s=0.05, retries=0)  # type: ignore[arg-type]
    assert driver.poll().values == {"pm1_0": 4.0, "pm2_5": 5.0, "pm10": 6.0}
    assert driver.counters.frames == 1 and driver.counters.errors == {}


@pytest.mark.real
def test_the_simulator_acknowledges_mode_and_sleep_and_sleeps_until_woken() -> None:
    with PtyPms5003(seed=3) as sim:
        transport = SerialTransport(sim.port, 9600, timeout_s=0.2)
        try:
            transport.write(pms5003.MODE_PASSIVE)
            assert transport.read(8) == ACK
            transport.write(pms5003.encode_command(pms5003.CMD_SLEEP, 0))
            assert transport.read(8) == bytes.fromhex("424d0004e4000177")
            for command in (pms5003.READ_PASSIVE, pms5003.MODE_ACTIVE):
                transport.write(command)
                assert transport.read(8) == b""  # asleep: not a byte
            transport.write(pms5003.encode_command(pms5003.CMD_SLEEP, 1))
            woke = pms5003.decode(transport.read(32))
            driver = Pms5003Driver(transport, timeout_s=1.0, retries=1)
            after = driver.poll().values  # still passive: the mode set before the sleep holds
        finally:
            transport.close()
    assert woke.reading is not None and after["pm2_5"] > 0
    assert (sim.acks_sent, sim.frames_sent, sim.active) == (2, 2, False)


@pytest.mark.real
def test_driver_reads_the_simulated_sensor_over_a_real_pty() -> None:
    with PtyPms5003(seed=3) as sim:
        transport = SerialTransport(sim.port, 9600, timeout_s=1.0)
        try:
            driver = Pms5003Driver(transport, timeout_s=1.0, retries=2)
            driver.set_passive()
            readings = [driver.poll().values for _ in range(5)]
        finally:
            transport.close()
    assert all(0 < r["pm2_5"] < 1000 and r["pm10"] >= r["pm2_5"] for r in readings)
    assert sim.frames_sent == 5 and driver.counters.frames == 5


@pytest.mark.real
def test_a_silent_port_times_out_with_bounded_retries() -> None:
    with PtyPms5003(seed=3, active=False) as sim:
        sim.stop_answering = True
        transport = SerialTransport(sim.port, 9600, timeout_s=0.1)
        try:
            driver = Pms5003Driver(transport, timeout_s=0.2, retries=2)
            with pytest.raises(NoAnswer):
                driver.poll()
        finally:
            transport.close()
    assert driver.counters.errors["timeout"] == 3


@pytest.mark.real
def test_opening_a_missing_port_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="cannot open /dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist")
