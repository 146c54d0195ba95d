"""Line-oriented ASCII/JSON sensors: parsing, fuzzing, and the driver over a real pty.

No independent peer exists for these tests, and none is needed: "line" is not a standard
but our name for cheap boards that print one reading per text line, in whatever format
their firmware chose. The profile supplies that format (a regex with named groups, or
JSON keys), so the only contract is Python's ``re`` and ``json`` applied to a line, both
independent of our code. The simulator's ``READ`` command and ``T=..,H=..`` line are an
example board, not a protocol to agree with.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_adapters.drivers import LineDriver
from firmware_adapters.line_sensor import LineError, LineFormat, split_lines
from firmware_adapters.serial_transport import SerialTransport
from simulators.pty_bus import line_bus

REGEX = LineFormat("regex", pattern=r"T=(?P<temperature>-?[0-9.]+),H=(?P<humidity>[0-9.]+)")
JSON = LineFormat("json", keys={"temperature": "t", "humidity": "h", "battery": "power.v"})


@pytest.mark.unit
@pytest.mark.parametrize(("fmt", "line", "values"), [
    (REGEX, b"T=23.5,H=61.2", {"temperature": 23.5, "humidity": 61.2}),
    (REGEX, b"boot ok; T=-4.0,H=80", {"temperature": -4.0, "humidity": 80.0}),
    (JSON, b'{"t": 23.5, "h": 61, "power": {"v": 3.3}}', {"temperature": 23.5, "humidity": 61.0, "battery": 3.3}),
    (JSON, b'{"t": 20}', {"temperature": 20.0}),
])
def test_parse(fmt: LineFormat, line: bytes, values: dict[str, float]) -> None:
    assert fmt.parse(line) == values


@pytest.mark.unit
@pytest.mark.parametrize(("fmt", "line", "reason"), [
    (REGEX, b"hello", "no-match"), (REGEX, b"\xff\xfe", "invalid-utf8"), (JSON, b"{not json", "invalid-json"),
    (JSON, b'{"x": 1}', "no-values"), (JSON, b'{"t": "warm"}', "not-a-number"), (JSON, b'{"t": NaN}', "not-a-number"),
    (REGEX, b"x" * 600, "oversize"), (REGEX, b"   ", "empty"),
])
def test_bad_lines_name_their_reason(fmt: LineFormat, line: bytes, reason: str) -> None:
    with pytest.raises(LineError) as err:
        fmt.parse(line)
    assert err.value.reason == reason


@pytest.mark.unit
def test_formats_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="named groups"):
        LineFormat("regex", pattern=r"T=([0-9.]+)")
    with pytest.raises(ValueError, match="does not compile"):
        LineFormat("regex", pattern=r"T=(")
    with pytest.raises(ValueError, match="unknown line format"):
        LineFormat("xml")


@pytest.mark.unit
def test_split_lines_keeps_the_unfinished_rest() -> None:
    assert split_lines(b"a\r\nb\rc\nrest") == ([b"a", b"b", b"c"], b"rest")


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=700))
def test_fuzz_only_line_errors_escape(buf: bytes) -> None:
    lines, _ = split_lines(buf)
    for fmt in (REGEX, JSON):
        for line in lines:
            try:
                fmt.parse(line)
            except LineError:
                pass


@pytest.mark.real
@pytest.mark.parametrize("json_format", [False, True])
def test_driver_reads_the_simulated_board_over_a_real_pty(json_format: bool) -> None:
    with line_bus(json_format=json_format, baudrate=115200) as bus:
        transport = SerialTransport(bus.port, 115200, timeout_s=0.1)
        try:
            driver = LineDriver(transport, JSON if json_format else REGEX, request=b"READ\r\n", timeout_s=1.0)
            reads = [driver.poll().values for _ in range(3)]
        finally:
            transport.close()
    assert all(15 < r["temperature"] < 30 and 40 < r["humidity"] < 80 for r in reads)
    assert driver.counters.frames == 3
