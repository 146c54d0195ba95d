"""What the meter framers (DL/T 645-2007, CJ/T 188-2004) share: the streaming result, the
error type, the additive checksum, wake-up skipping and little-endian BCD."""

from dataclasses import dataclass
from typing import Generic, TypeVar

F = TypeVar("F")

WAKE_UP_BYTE = 0xFE


class FrameError(ValueError):
    """A frame that is not valid; ``reason`` is a short stable word for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded(Generic[F]):
    """``used`` bytes consumed (0 = need more). ``frame`` or ``error`` says what they were;
    neither is set when only wake-up bytes were skipped."""

    used: int
    frame: F | None = None
    error: str | None = None


class ControlByte:
    """The control byte both standards share: bit 7 reply, bit 6 abnormal, low bits the
    function (``FUNCTION_MASK`` wide). Mixed into each standard's frame dataclass."""

    __slots__ = ()
    control: int
    REPLY = 0x80
    ABNORMAL = 0x40
    FUNCTION_MASK = 0x1F

    @property
    def is_reply(self) -> bool:
        return bool(self.control & self.REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & self.ABNORMAL)

    @property
    def function(self) -> int:
        return self.control & self.FUNCTION_MASK


def checksum(data: bytes) -> int:
    """The sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def skip_to(buf: bytes, start: int) -> "Decoded[object] | None":
    """None if ``buf`` begins with ``start``; else what to skip (wake-up bytes silently)."""
    at = buf.find(start)
    if at == 0:
        return None
    skipped = buf if at < 0 else buf[:at]
    return Decoded(len(skipped), error="garbage" if skipped.strip(bytes((WAKE_UP_BYTE,))) else None)


def encode_bcd_address(address: str, size: int, standard: str) -> bytes:
    """A meter address of ``2 * size`` decimal digits, lowest byte first; all ``a`` is the
    wildcard (AA on every byte). ValueError names the standard and what is wrong."""
    if len(address) != 2 * size:
        raise ValueError(f"a {standard} address has {2 * size} digits, got {address!r}")
    if address.lower() == "a" * 2 * size:
        return b"\xaa" * size
    if not address.isdigit():
        raise ValueError(f"a {standard} address is decimal digits, got {address!r}")
    return bytes.fromhex(address)[::-1]


def to_bcd(value: int, size: int) -> bytes:
    """``value`` as ``size`` BCD bytes, low byte first."""
    return bytes.fromhex(f"{value:0{size * 2}d}")[::-1]


def from_bcd(raw: bytes, what: str) -> int:
    """The number in little-endian BCD ``raw``; FrameError if a nibble is not a digit."""
    text = raw[::-1].hex()
    if not text.isdigit():
        raise FrameError("bad-bcd", f"{what} bytes {raw.hex()} are not BCD")
    return int(text)
