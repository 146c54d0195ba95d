"""DL/T 645-2007 multi-function electricity meters: pure framer, no I/O.

Frame (clause 4.1), all multi-byte fields low byte first::

    FE FE FE FE | 68 | A0 A1 A2 A3 A4 A5 | 68 | C | L | DATA (L bytes) | CS | 16
    wake-up       start  address (BCD)    start ctl len  each byte +33h   sum  end

    address  12 BCD digits, A0 the two lowest; AA..AA is the wildcard (read address)
    C        bit7 direction (1 = from the meter), bit6 abnormal reply, bit5 more
             frames follow, bits4..0 function: 11h read data, 13h read address
    DATA     every byte sent with 33h added (and subtracted on receipt)
    CS       sum of every byte from the first 68 to the last data byte, modulo 256

Read data: the master sends the 4-byte data identifier DI0..DI3; a normal reply
(C = 91h) echoes it followed by the value in BCD, low byte first; an abnormal reply
(C = D1h) carries one error byte whose bits name the reason (:data:`ERROR_BITS`).
"""

from dataclasses import dataclass

from firmware_adapters.frames import (ControlByte, Decoded, FrameError, checksum, encode_bcd_address, from_bcd,
                                      skip_to, to_bcd)

WAKE_UP = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
OFFSET = 0x33
WILDCARD = "aaaaaaaaaaaa"

READ_DATA = 0x11
READ_ADDRESS = 0x13
REPLY = 0x80
ABNORMAL = 0x40
MAX_DATA = 200  # the standard caps L at 200 for reads

_HEADER = 10  # 68 A0..A5 68 C L
_MIN_FRAME = _HEADER + 2


@dataclass(frozen=True, slots=True)
class Quantity:
    """A data identifier and how its value is written: ``size`` BCD bytes, ``decimals``."""

    di: int
    size: int
    decimals: int
    signed: bool
    unit: str
    name: str


# Data identifiers the edge reads (DI3 DI2 DI1 DI0 written as one number).
QUANTITIES: dict[str, Quantity] = {q.name: q for q in (
    Quantity(0x00000000, 4, 2, False, "kWh", "energy_total"),         # combined active energy, total
    Quantity(0x00010000, 4, 2, False, "kWh", "energy_forward"),       # forward active energy, total
    Quantity(0x02010100, 2, 1, False, "V", "voltage_a"),              # phase A voltage XXX.X
    Quantity(0x02020100, 3, 3, True, "A", "current_a"),               # phase A current XXX.XXX
    Quantity(0x02030000, 3, 4, True, "kW", "power_total"),            # total active power XX.XXXX
)}
BY_DI = {q.di: q for q in QUANTITIES.values()}

ERROR_BITS = (
    (0x01, "other error"),
    (0x02, "no such data (unknown data identifier)"),
    (0x04, "wrong password or not authorised"),
    (0x08, "baud rate cannot be changed"),
    (0x10, "too many yearly time zones"),
    (0x20, "too many daily time periods"),
    (0x40, "too many tariffs"),
)


@dataclass(frozen=True, slots=True)
class Frame(ControlByte):
    address: str  # 12 BCD digits as printed on the meter's nameplate
    control: int
    data: bytes  # with the 33h offset already removed


def describe_error(code: int) -> str:
    reasons = [text for bit, text in ERROR_BITS if code & bit]
    return "; ".join(reasons) or f"unspecified error (0x{code:02x})"


def encode_address(address: str) -> bytes:
    """``"123456789012"`` -> ``12 90 78 56 34 12`` (A0 first); ``"aaaaaaaaaaaa"`` is the wildcard."""
    return encode_bcd_address(address, 6, "DL/T 645")


def decode_address(raw: bytes) -> str:
    return raw[::-1].hex()


def encode(address: str, control: int, data: bytes = b"", *, wake_up: bool = True) -> bytes:
    if len(data) > 255:
        raise ValueError("DL/T 645 data field is at most 255 bytes")
    body = bytes((START,)) + encode_address(address) + bytes((START, control, len(data)))
    body += bytes((b + OFFSET) & 0xFF for b in data)
    return (WAKE_UP if wake_up else b"") + body + bytes((checksum(body), END))


def decode(buf: bytes) -> Decoded[Frame]:
    """Decode one frame from the start of ``buf`` (wake-up bytes and garbage are skipped).

    A candidate with a wrong second start byte, end byte or checksum consumes only its
    first byte, so that a real frame starting inside it is still found.
    """
    skip = skip_to(buf, START)
    if skip is not None:
        return skip  # type: ignore[return-value]
    if len(buf) < _HEADER:
        return Decoded(0)
    if buf[7] != START:
        return Decoded(1, error="bad-start")
    length = buf[9]
    total = _HEADER + length + 2
    if len(buf) < total:
        return Decoded(0)
    if buf[total - 1] != END:
        return Decoded(1, error="bad-end")
    if checksum(buf[:total - 2]) != buf[total - 2]:
        return Decoded(1, error="checksum")
    data = bytes((b - OFFSET) & 0xFF for b in buf[_HEADER:_HEADER + length])
    return Decoded(total, frame=Frame(decode_address(buf[1:7]), buf[8], data))


def di_bytes(di: int) -> bytes:
    return di.to_bytes(4, "little")


def read_request(address: str, di: int) -> bytes:
    return encode(address, READ_DATA, di_bytes(di))


def read_address_request() -> bytes:
    return encode(WILDCARD, READ_ADDRESS)


def encode_value(quantity: Quantity, value: float) -> bytes:
    """A value in the standard's BCD layout (low byte first; sign in the top bit if signed)."""
    scaled = round(abs(value) * 10 ** quantity.decimals)
    digits = quantity.size * 2
    if scaled >= 10 ** digits or (quantity.signed and scaled >= 8 * 10 ** (digits - 1)):
        raise ValueError(f"{value} does not fit {quantity.name} ({digits} BCD digits)")
    raw = bytearray(to_bcd(scaled, quantity.size))
    if quantity.signed and value < 0:
        raw[-1] |= 0x80
    return bytes(raw)


def decode_value(quantity: Quantity, raw: bytes) -> float:
    if len(raw) != quantity.size:
        raise FrameError("bad-length", f"{quantity.name} needs {quantity.size} bytes, got {len(raw)}")
    data = bytearray(raw)
    negative = False
    if quantity.signed and data[-1] & 0x80:
        negative = True
        data[-1] &= 0x7F
    value = from_bcd(bytes(data), quantity.name) / 10 ** quantity.decimals
    return -value if negative else value


def read_reply(address: str, quantity: Quantity, value: float) -> bytes:
    return encode(address, REPLY | READ_DATA, di_bytes(quantity.di) + encode_value(quantity, value))


def error_reply(address: str, function: int, code: int) -> bytes:
    return encode(address, REPLY | ABNORMAL | function, bytes((code,)))


def parse_read_reply(frame: Frame, address: str, quantity: Quantity) -> float:
    """The value of a read-data reply; :class:`FrameError` names why a reply is unusable.

    An abnormal reply raises with ``reason="meter-error"`` and the decoded error bits.
    """
    if frame.address != address:
        raise FrameError("wrong-address", f"expected {address}, reply from {frame.address}")
    if not frame.is_reply or frame.function != READ_DATA:
        raise FrameError("unexpected-control", f"0x{frame.control:02x}")
    if frame.is_abnormal:
        code = frame.data[0] if frame.data else 0
        raise FrameError("meter-error", describe_error(code))
    if len(frame.data) < 4 or int.from_bytes(frame.data[:4], "little") != quantity.di:
        raise FrameError("wrong-di", f"asked {quantity.di:08x}, reply {frame.data[:4][::-1].hex()}")
    return decode_value(quantity, frame.data[4:])
