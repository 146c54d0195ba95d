"""CJ/T 188-2004 household water, gas and heat meters: pure framer, no I/O.

Frame, multi-byte fields low byte first::

    FE FE | 68 | T | A0 .. A6 | C | L | DI0 DI1 SER | payload | CS | 16
    wake    start  type  address   ctl len  data (L bytes)      sum  end

    T        meter type: 10h-19h water (10h cold, 11h hot, 12h drinking, 13h reclaimed),
             20h-29h heat (20h heat, 21h cooling), 30h-39h gas, 40h-49h custom
    address  14 BCD digits, A0 the two lowest; AA..AA is the wildcard (read address)
    C        bit7 direction (1 = from the meter), bit6 abnormal reply, bits5..0
             function: 01h read data, 03h read address
    DI       90h 1Fh = metering data (as sent on the wire); 81h 0Ah = address. Meters
             in the field also send 1Fh 90h (low byte first, as CJ/T 188-2018 does);
             a reply is accepted in either order and the simulator echoes the request's
    CS       sum of every byte from 68 to the last data byte, modulo 256

Reply to read metering data (C = 81h, L = 16h)::

    DI0 DI1 SER | current total (4 BCD, XXXXXX.XX) unit | total at settlement day
    (4 BCD) unit | real time (7 BCD: ss mm hh DD MM YY YY) | status ST0 ST1

    unit 2Ch = m³, 29h = L
    ST0  bits1..0 valve: 00 open, 01 closed, 11 abnormal; bit2 battery low

There is no 33h offset in this standard (unlike DL/T 645).
"""

from dataclasses import dataclass
from datetime import datetime

from firmware_adapters.frames import (ControlByte, Decoded, FrameError, checksum, encode_bcd_address, from_bcd,
                                      skip_to, to_bcd)

WAKE_UP = b"\xfe\xfe"
START = 0x68
END = 0x16
WILDCARD = "aaaaaaaaaaaaaa"

READ_DATA = 0x01
READ_ADDRESS = 0x03
REPLY = 0x80
ABNORMAL = 0x40

DI_METERING = b"\x90\x1f"
DI_METERING_ORDERS = (DI_METERING, DI_METERING[::-1])
DI_ADDRESS = b"\x81\x0a"

UNITS = {0x2C: ("m3", 1.0), 0x29: ("L", 0.001), 0x2B: ("m3", 1.0)}  # to m³
UNIT_M3 = 0x2C

VALVE = {0b00: "open", 0b01: "closed", 0b11: "abnormal", 0b10: "abnormal"}

_HEADER = 11  # 68 T A0..A6 C L


def meter_family(meter_type: int) -> str:
    family = {0x1: "water", 0x2: "heat", 0x3: "gas", 0x4: "custom"}.get(meter_type >> 4)
    if family is None:
        raise ValueError(f"meter type 0x{meter_type:02x} is outside 10h-49h")
    return family


@dataclass(frozen=True, slots=True)
class Frame(ControlByte):
    meter_type: int
    address: str  # 14 BCD digits
    control: int
    data: bytes

    FUNCTION_MASK = 0x3F


@dataclass(frozen=True, slots=True)
class Metering:
    total_m3: float
    settlement_m3: float
    meter_time: datetime | None
    valve: str
    battery_low: bool


def encode_address(address: str) -> bytes:
    return encode_bcd_address(address, 7, "CJ/T 188")


def encode(meter_type: int, address: str, control: int, data: bytes, *, wake_up: bool = True) -> bytes:
    body = bytes((START, meter_type)) + encode_address(address) + bytes((control, len(data))) + data
    return (WAKE_UP if wake_up else b"") + body + bytes((checksum(body), END))


def decode(buf: bytes) -> Decoded[Frame]:
    """Decode one frame from the start of ``buf``; same streaming contract as DL/T 645's."""
    skip = skip_to(buf, START)
    if skip is not None:
        return skip  # type: ignore[return-value]
    if len(buf) < _HEADER:
        return Decoded(0)
    length = buf[10]
    total = _HEADER + length + 2
    if len(buf) < total:
        return Decoded(0)
    if buf[total - 1] != END:
        return Decoded(1, error="bad-end")
    if checksum(buf[:total - 2]) != buf[total - 2]:
        return Decoded(1, error="checksum")
    return Decoded(total, frame=Frame(buf[1], buf[2:9][::-1].hex(), buf[9], bytes(buf[_HEADER:_HEADER + length])))


def read_request(meter_type: int, address: str, ser: int = 0) -> bytes:
    return encode(meter_type, address, READ_DATA, DI_METERING + bytes((ser & 0xFF,)))


def read_address_request(meter_type: int = 0xAA) -> bytes:
    return encode(meter_type, WILDCARD, READ_ADDRESS, DI_ADDRESS + b"\x00")


def status_bytes(valve: str, battery_low: bool) -> bytes:
    code = {"open": 0b00, "closed": 0b01, "abnormal": 0b11}[valve]
    return bytes((code | (0b100 if battery_low else 0), 0))


def metering_reply(meter_type: int, address: str, ser: int, total_m3: float, settlement_m3: float,
                   meter_time: datetime, valve: str = "open", battery_low: bool = False,
                   di: bytes = DI_METERING) -> bytes:
    t = meter_time
    clock = to_bcd(t.second, 1) + to_bcd(t.minute, 1) + to_bcd(t.hour, 1) + to_bcd(t.day, 1) + to_bcd(t.month, 1) \
        + to_bcd(t.year, 2)
    payload = (di + bytes((ser & 0xFF,))
               + to_bcd(round(total_m3 * 100), 4) + bytes((UNIT_M3,))
               + to_bcd(round(settlement_m3 * 100), 4) + bytes((UNIT_M3,))
               + clock + status_bytes(valve, battery_low))
    return encode(meter_type, address, REPLY | READ_DATA, payload)


def error_reply(meter_type: int, address: str, ser: int, valve: str = "abnormal", battery_low: bool = False) -> bytes:
    return encode(meter_type, address, REPLY | ABNORMAL | READ_DATA,
                  bytes((ser & 0xFF,)) + status_bytes(valve, battery_low))


def _volume(raw: bytes, unit: int, what: str) -> float:
    if unit not in UNITS:
        raise FrameError("bad-unit", f"{what} unit code 0x{unit:02x}")
    return from_bcd(raw, what) / 100 * UNITS[unit][1]


def parse_metering(frame: Frame, address: str) -> Metering:
    """The metering data of a read reply; :class:`FrameError` names why a reply is unusable."""
    if frame.address != address:
        raise FrameError("wrong-address", f"expected {address}, reply from {frame.address}")
    if not frame.is_reply or frame.function != READ_DATA:
        raise FrameError("unexpected-control", f"0x{frame.control:02x}")
    if frame.is_abnormal:
        st = frame.data[-2] if len(frame.data) >= 2 else 0
        raise FrameError("meter-error", f"abnormal reply, valve {VALVE[st & 0b11]}, battery "
                                        f"{'low' if st & 0b100 else 'ok'}")
    d = frame.data
    if len(d) != 22 or d[:2] not in DI_METERING_ORDERS:
        raise FrameError("bad-length" if len(d) != 22 else "wrong-di", f"data {d.hex()}")
    total = _volume(d[3:7], d[7], "current total")
    settlement = _volume(d[8:12], d[12], "settlement total")
    c = d[13:20]
    try:
        when: datetime | None = datetime(from_bcd(c[5:7], "year"), from_bcd(c[4:5], "month"),
                                         from_bcd(c[3:4], "day"), from_bcd(c[2:3], "hour"),
                                         from_bcd(c[1:2], "minute"), from_bcd(c[0:1], "second"))
    except (ValueError, FrameError):
        when = None  # a meter with an unset clock still reports its volume
    st = d[20]
    return Metering(total, settlement, when, VALVE[st & 0b11], bool(st & 0b100))
