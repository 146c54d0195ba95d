"""Plantower PMS5003 particulate sensor: pure framer, no I/O.

Data frame, 32 bytes, all words big-endian (datasheet v2.3, appendix I)::

    +------+------+---------+----------------------------------------+----------+
    | 0x42 | 0x4D | len=28  | 13 data words (26 bytes)               | checksum |
    +------+------+---------+----------------------------------------+----------+
      0      1      2..3      4..29                                    30..31

    data words: PM1.0, PM2.5, PM10 (CF=1, standard particle);
                PM1.0, PM2.5, PM10 (atmospheric environment);
                particles >0.3, >0.5, >1.0, >2.5, >5.0, >10 um per 0.1 L; reserved
    checksum   = sum of bytes 0..29, modulo 2**16

Command acknowledgement, 8 bytes, sent by the sensor after a mode (0xE1) or a sleep
(0xE4 0x0000) command (PMS7003 manual, appendix II; pypms expects the same header)::

    +------+------+---------+-----+------+----------+
    | 0x42 | 0x4D | len=4   | CMD | DATA | checksum |      e.g. 42 4D 00 04 E1 00 01 74
    +------+------+---------+-----+------+----------+           (passive mode set)
      0      1      2..3      4     5      6..7

    DATA is the low byte of the command's data; checksum = sum of bytes 0..5.
    A reader must skip it: it shares the data frame's start marker.

Host command, 7 bytes::

    0x42 0x4D CMD DATA_H DATA_L LRC_H LRC_L      LRC = sum of the first 5 bytes

    CMD 0xE2 DATA 0x0000   read once (passive mode)
    CMD 0xE1 DATA 0x0000   switch to passive mode; 0x0001 switch to active mode
    CMD 0xE4 DATA 0x0000   sleep; 0x0001 wake up
"""

import struct
from dataclasses import dataclass

START = b"\x42\x4d"
FRAME_LEN = 32
ACK_LEN = 8
COMMAND_LEN = 7
_DATA_LEN = 28  # the value of the length field: 13 words + checksum
_ACK_DATA_LEN = 4  # an acknowledgement's length field: CMD, DATA and checksum

CMD_READ = 0xE2
CMD_MODE = 0xE1
CMD_SLEEP = 0xE4


@dataclass(frozen=True, slots=True)
class Reading:
    pm1_0_cf1: int
    pm2_5_cf1: int
    pm10_cf1: int
    pm1_0: int
    pm2_5: int
    pm10: int
    gt0_3um: int
    gt0_5um: int
    gt1_0um: int
    gt2_5um: int
    gt5_0um: int
    gt10um: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """Result of :func:`decode`: ``used`` bytes consumed (0 = need more bytes).

    Exactly one of ``reading``, ``ack`` (the acknowledged ``(cmd, data)``) and ``error``
    is set when ``used`` > 0.
    """

    used: int
    reading: Reading | None = None
    error: str | None = None
    ack: tuple[int, int] | None = None


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def encode_reading(reading: Reading) -> bytes:
    words = (
        reading.pm1_0_cf1, reading.pm2_5_cf1, reading.pm10_cf1,
        reading.pm1_0, reading.pm2_5, reading.pm10,
        reading.gt0_3um, reading.gt0_5um, reading.gt1_0um,
        reading.gt2_5um, reading.gt5_0um, reading.gt10um, 0,
    )
    body = START + struct.pack(">H13H", _DATA_LEN, *(w & 0xFFFF for w in words))
    return body + struct.pack(">H", checksum(body))


def encode_ack(cmd: int, data: int = 0) -> bytes:
    """The sensor's acknowledgement of a mode or sleep command."""
    body = START + struct.pack(">HBB", _ACK_DATA_LEN, cmd & 0xFF, data & 0xFF)
    return body + struct.pack(">H", checksum(body))


def decode(buf: bytes) -> Decoded:
    """Decode one data frame or acknowledgement from the start of ``buf``.

    Leading bytes that are not a frame start are consumed as ``garbage``; a frame
    with a bad length or checksum consumes its first byte only, so that a real frame
    starting inside it is still found. An acknowledgement is consumed whole and
    returned as ``ack``, so that a reader stays in step with the frames after it.
    """
    if not buf:
        return Decoded(0)
    start = buf.find(START)
    if start < 0:
        # Keep a trailing 0x42: it may be the first half of a start marker.
        keep = 1 if buf[-1:] == START[:1] else 0
        used = len(buf) - keep
        return Decoded(used, error="garbage") if used else Decoded(0)
    if start > 0:
        return Decoded(start, error="garbage")
    if len(buf) < 4:
        return Decoded(0)
    (length,) = struct.unpack_from(">H", buf, 2)
    if length == _ACK_DATA_LEN:
        return _decode_ack(buf)
    if length != _DATA_LEN:
        return Decoded(1, error="bad-length")
    if len(buf) < FRAME_LEN:
        return Decoded(0)
    frame = buf[:FRAME_LEN]
    (expected,) = struct.unpack_from(">H", frame, 30)
    if checksum(frame[:30]) != expected:
        return Decoded(1, error="checksum")
    words = struct.unpack_from(">12H", frame, 4)
    return Decoded(FRAME_LEN, reading=Reading(*words))


def _decode_ack(buf: bytes) -> Decoded:
    if len(buf) < ACK_LEN:
        return Decoded(0)
    (expected,) = struct.unpack_from(">H", buf, 6)
    if checksum(buf[:6]) != expected:
        return Decoded(1, error="checksum")
    return Decoded(ACK_LEN, ack=(buf[4], buf[5]))


def encode_command(cmd: int, data: int = 0) -> bytes:
    head = START + bytes((cmd & 0xFF, (data >> 8) & 0xFF, data & 0xFF))
    return head + struct.pack(">H", checksum(head))


def decode_command(buf: bytes) -> tuple[int, tuple[int, int] | None]:
    """Decode a host command: ``(used, (cmd, data))``; ``(0, None)`` needs more bytes.

    ``(n, None)`` with n > 0 means n bytes were not a valid command and are dropped.
    """
    start = buf.find(START)
    if start < 0:
        keep = 1 if buf[-1:] == START[:1] else 0
        return len(buf) - keep, None
    if start > 0:
        return start, None
    if len(buf) < COMMAND_LEN:
        return 0, None
    (lrc,) = struct.unpack_from(">H", buf, 5)
    if checksum(buf[:5]) != lrc:
        return 1, None
    return COMMAND_LEN, (buf[2], (buf[3] << 8) | buf[4])


READ_PASSIVE = encode_command(CMD_READ)
MODE_PASSIVE = encode_command(CMD_MODE, 0)
MODE_ACTIVE = encode_command(CMD_MODE, 1)
