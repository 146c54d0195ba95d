"""CJ/T 188-2004 against frames published by other implementations, not by us.

The standard's text is not freely available, so the frames come from public code that
reads real meters, each cited where it is used. Two wire orders of the metering data
identifier are in use: ``90 1F`` (source A, and our requests) and ``1F 90`` (source B).
Our framer must read both; our simulator must produce source A's bytes exactly.
"""

from datetime import datetime

import pytest

from firmware_adapters import cjt188
from simulators.pty_bus import Cjt188Meter

# Source A: the unit tests of a C# CJ/T 188-2004 framer, class FrameCJT188_2004Sample
# (namespace Friendcom.Protocol.Sample, methods SetDataSample / IsProtocolSample), found by
# code search of public GitHub sources. A read request to cold-water meter 00201510270588
# (address sent low byte first: 88 05 27 10 15 20 00), SER 01, and the meter's reply: total
# 0.00 m3, settlement 0.00 m3, clock 2017-01-09 17:20:06, status 00 00 (valve open, battery ok).
A_ADDRESS = "00201510270588"
A_REQUEST = "68 10 88 05 27 10 15 20 00 01 03 90 1F 01 25 16"
A_REPLY = ("68 10 88 05 27 10 15 20 00 81 16 90 1F 01 00 00 00 00 2C 00 00 00 00 2C"
           " 06 20 17 09 01 17 20 00 00 8E 16")

# Source B: the reply example quoted with its field-by-field reading in a public C# test
# (NKnife.Serials.UnitTests, UsualPackageParseToolTestBy188, after cnblogs.com/myzony/p/10897895)
# and in a public Java CJ/T 188 decoder (FoxEdge's CJT188ProtocolGetData): meter type 10h,
# address 78330011223344, DI 1F 90, SER 00, total 556677.00 m3, this month 556677.00 m3,
# clock 2015-05-11 22:01:31, status 21 84 (ST0 = 21h: valve bits 01 = closed, battery bit 0).
# The NKnife comment gives checksum 08; the sum is 13h, as the Java source has it.
B_ADDRESS = "78330011223344"
B_REPLY = ("FE FE FE FE 68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C"
           " 31 01 22 11 05 15 20 21 84 13 16")


def _one_frame(hex_text: str) -> cjt188.Frame:
    buf = bytes.fromhex(hex_text)
    while buf:
        d = cjt188.decode(buf)
        assert d.used > 0 and d.error is None, d
        buf = buf[d.used:]
        if d.frame is not None:
            assert not buf
            return d.frame
    raise AssertionError("no frame")


@pytest.mark.unit
def test_our_read_request_is_source_a_byte_for_byte() -> None:
    assert cjt188.read_request(0x10, A_ADDRESS, ser=1) == cjt188.WAKE_UP + bytes.fromhex(A_REQUEST)
    frame = _one_frame(A_REQUEST)
    assert (frame.meter_type, frame.address, frame.control, frame.data) == (0x10, A_ADDRESS, 0x01, b"\x90\x1f\x01")


@pytest.mark.unit
def test_source_a_reply_decodes_to_its_values() -> None:
    m = cjt188.parse_metering(_one_frame(A_REPLY), A_ADDRESS)
    assert (m.total_m3, m.settlement_m3, m.meter_time, m.valve, m.battery_low) == \
        (0.0, 0.0, datetime(2017, 1, 9, 17, 20, 6), "open", False)


@pytest.mark.unit
def test_our_simulator_encodes_source_a_values_to_its_bytes() -> None:
    encoded = cjt188.metering_reply(0x10, A_ADDRESS, 1, 0.0, 0.0, datetime(2017, 1, 9, 17, 20, 6))
    assert encoded == cjt188.WAKE_UP + bytes.fromhex(A_REPLY)  # we add the two FE wake-up bytes


@pytest.mark.unit
def test_source_b_reply_with_the_identifier_low_byte_first_decodes_to_its_values() -> None:
    m = cjt188.parse_metering(_one_frame(B_REPLY), B_ADDRESS)
    assert (m.total_m3, m.settlement_m3, m.meter_time, m.valve, m.battery_low) == \
        (556677.0, 556677.0, datetime(2015, 5, 11, 22, 1, 31), "closed", False)


@pytest.mark.unit
def test_our_simulated_meter_answers_a_request_with_the_identifier_low_byte_first() -> None:
    request = _one_frame(cjt188.encode(0x10, B_ADDRESS, cjt188.READ_DATA, b"\x1f\x90\x00").hex())
    reply = Cjt188Meter(B_ADDRESS, seed=1).answer(request, now=0.0)
    assert reply is not None
    frame = _one_frame(reply.hex())
    assert frame.data[:3] == b"\x1f\x90\x00" and not frame.is_abnormal  # echoes the order it was asked in
    assert cjt188.parse_metering(frame, B_ADDRESS).valve == "open"
