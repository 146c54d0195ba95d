"""PMS5003 driver: passive-mode reads over an injected byte transport."""

import time
from dataclasses import dataclass, field

from firmware_adapters import AdapterError, pms5003
from firmware_adapters.serial_transport import ByteTransport


class NoAnswer(AdapterError):
    """The sensor sent no valid frame before the timeout."""


@dataclass
class FrameCounters:
    frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class Pms5003Driver:
    """Reads the sensor in passive mode: one command, one frame."""

    def __init__(self, transport: ByteTransport, *, timeout_s: float = 1.0, retries: int = 2) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self._retries = retries
        self.counters = FrameCounters()

    def set_passive(self) -> None:
        self._transport.write(pms5003.MODE_PASSIVE)

    def read(self) -> pms5003.Reading:
        """Ask for one reading; retry on a bad or missing frame; raise :class:`NoAnswer`."""
        for _ in range(self._retries + 1):
            self._transport.reset_input()
            self._transport.write(pms5003.READ_PASSIVE)
            reading = self._read_frame()
            if reading is not None:
                self.counters.frames += 1
                return reading
        raise NoAnswer(f"no valid frame after {self._retries + 1} attempts")

    def _read_frame(self) -> pms5003.Reading | None:
        buf = b""
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            chunk = self._transport.read(pms5003.FRAME_LEN - len(buf) if len(buf) < pms5003.FRAME_LEN else 1)
            if chunk:
                buf += chunk
            while buf:
                result = pms5003.decode(buf)
                if result.used == 0:
                    break
                buf = buf[result.used:]
                if result.reading is not None:
                    return result.reading
                self.counters.error(result.error or "unknown")
        self.counters.error("timeout")
        return None
