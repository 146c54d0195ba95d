"""Polling drivers: one per device, over a transport shared by every device on its bus.

Every driver answers :meth:`poll` with a :class:`PointRead` (values per point, and a
reason for each point it could not read) or raises :class:`NoAnswer` after its
bounded retries. Bad and partial frames are counted in ``counters`` and dropped; they
never escape. :class:`TransportError` (the port failed) is the caller's to handle.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from firmware_adapters import AdapterError, cjt188, dlt645, pms5003
from firmware_adapters.line_sensor import LineError, LineFormat, split_lines
from firmware_adapters.serial_transport import ByteTransport


class NoAnswer(AdapterError):
    """The device sent no valid reply within its timeout and retries."""


@dataclass
class FrameCounters:
    frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


@dataclass
class PointRead:
    values: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # point -> reason it was not read


class Driver(Protocol):
    counters: FrameCounters

    def poll(self) -> PointRead: ...


F = TypeVar("F")


class Decoded(Protocol):
    @property
    def used(self) -> int: ...
    @property
    def error(self) -> str | None: ...


def read_frame(transport: ByteTransport, decode: Callable[[bytes], Decoded], accept: Callable[[F], bool],
                  timeout_s: float, counters: FrameCounters) -> F | None:
    """Read until ``decode`` yields a frame that ``accept`` takes, or the timeout.

    Garbage, bad checksums and frames ``accept`` refuses (other addresses on the bus)
    are counted and skipped.
    """
    buf = b""
    deadline = time.monotonic() + timeout_s
    while True:
        while buf:
            result = decode(buf)
            if result.used == 0:
                break
            buf = buf[result.used:]
            frame = getattr(result, "frame", None)
            if frame is not None:
                if accept(frame):
                    counters.frames += 1
                    return frame
                counters.error("not-for-us")
            elif result.error is not None:
                counters.error(result.error)
        if time.monotonic() >= deadline:
            if buf:
                counters.error("partial")
            return None
        buf += transport.read_some(256)


class _RequestReply:
    """Send a request, wait for the matching reply; retry a bounded number of times."""

    def __init__(self, transport: ByteTransport, *, timeout_s: float, retries: int) -> None:
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.counters = FrameCounters()

    def _ask(self, request: bytes, decode: Callable[[bytes], Decoded], accept: Callable[[F], bool]) -> F:
        for _ in range(self.retries + 1):
            self.transport.reset_input()
            self.transport.write(request)
            frame = read_frame(self.transport, decode, accept, self.timeout_s, self.counters)
            if frame is not None:
                return frame
            self.counters.error("timeout")
        raise NoAnswer(f"no valid reply after {self.retries + 1} attempts of {self.timeout_s:.2f}s")


class Dlt645Driver(_RequestReply):
    """Reads the configured quantities of one DL/T 645-2007 meter, one request each."""

    def __init__(self, transport: ByteTransport, address: str, quantities: dict[str, str], *,
                 timeout_s: float = 0.5, retries: int = 1) -> None:
        super().__init__(transport, timeout_s=timeout_s, retries=retries)
        dlt645.encode_address(address)  # validates
        self.address = address
        unknown = sorted(set(quantities.values()) - set(dlt645.QUANTITIES))
        if unknown:
            raise ValueError(f"unknown DL/T 645 quantities {unknown}; known: {sorted(dlt645.QUANTITIES)}")
        self.points = {point: dlt645.QUANTITIES[q] for point, q in quantities.items()}

    def _ours(self, frame: dlt645.Frame) -> bool:
        return frame.is_reply and frame.address == self.address

    def poll(self) -> PointRead:
        read = PointRead()
        answered = False
        for point, quantity in self.points.items():
            try:
                frame = self._ask(dlt645.read_request(self.address, quantity.di), dlt645.decode, self._ours)
                read.values[point] = dlt645.parse_read_reply(frame, self.address, quantity)
                answered = True
            except NoAnswer as exc:
                read.errors[point] = str(exc)
            except dlt645.FrameError as exc:
                answered = True  # the meter is there; it refused or garbled this one quantity
                self.counters.error(exc.reason)
                read.errors[point] = str(exc)
        if not answered:
            raise NoAnswer(f"meter {self.address} did not answer")
        return read

    def read_address(self) -> str:
        """The address of the only meter on the bus (wildcard request)."""
        frame = self._ask(dlt645.read_address_request(), dlt645.decode,
                          lambda f: f.is_reply and f.function == dlt645.READ_ADDRESS)
        return frame.address


class Cjt188Driver(_RequestReply):
    """Reads a CJ/T 188-2004 meter: accumulated volume, valve state, battery."""

    def __init__(self, transport: ByteTransport, meter_type: int, address: str, *,
                 timeout_s: float = 0.5, retries: int = 1) -> None:
        super().__init__(transport, timeout_s=timeout_s, retries=retries)
        cjt188.meter_family(meter_type)
        cjt188.encode_address(address)
        self.meter_type = meter_type
        self.address = address
        self._ser = 0

    def poll(self) -> PointRead:
        self._ser = (self._ser + 1) & 0xFF
        frame = self._ask(cjt188.read_request(self.meter_type, self.address, self._ser), cjt188.decode,
                          lambda f: f.is_reply and f.address == self.address)
        try:
            m = cjt188.parse_metering(frame, self.address)
        except cjt188.FrameError as exc:
            self.counters.error(exc.reason)
            return PointRead(errors={"total_m3": str(exc)})
        return PointRead(values={"total_m3": m.total_m3, "valve_open": float(m.valve == "open"),
                                 "battery_low": float(m.battery_low)})


class Pms5003Driver(_RequestReply):
    """Reads a PMS5003 in passive mode: one read command, one 32-byte frame.

    The sensor acknowledges mode and sleep commands with an 8-byte frame that starts
    like a data frame; the framer recognises it and :func:`read_frame` skips it, so an
    acknowledgement that arrives late (after the next read command) costs nothing.
    """

    def poll(self) -> PointRead:
        r = self._ask(pms5003.READ_PASSIVE, _Pms5003Stream.decode, lambda _: True)
        return PointRead(values={"pm1_0": float(r.pm1_0), "pm2_5": float(r.pm2_5), "pm10": float(r.pm10)})

    def set_passive(self) -> None:
        self.transport.write(pms5003.MODE_PASSIVE)


@dataclass(frozen=True, slots=True)
class _Pms5003Stream:
    used: int
    frame: pms5003.Reading | None
    error: str | None

    @classmethod
    def decode(cls, buf: bytes) -> "_Pms5003Stream":
        d = pms5003.decode(buf)
        return cls(d.used, d.reading, d.error)


class LineDriver:
    """A sensor that prints one line per reading, by itself or when sent ``request``."""

    def __init__(self, transport: ByteTransport, fmt: LineFormat, *, request: bytes = b"",
                 timeout_s: float = 2.0) -> None:
        self.transport = transport
        self.format = fmt
        self.request = request
        self.timeout_s = timeout_s
        self.counters = FrameCounters()
        self._rest = b""

    def poll(self) -> PointRead:
        if self.request:
            self.transport.reset_input()
            self._rest = b""
            self.transport.write(self.request)
        deadline = time.monotonic() + self.timeout_s
        latest: dict[str, float] | None = None
        while time.monotonic() < deadline:
            lines, self._rest = split_lines(self._rest + self.transport.read_some(512))
            for line in lines:
                try:
                    latest = self.format.parse(line)
                    self.counters.frames += 1
                except LineError as exc:
                    self.counters.error(exc.reason)
            if latest is not None:
                return PointRead(values=latest)
        self.counters.error("timeout")
        raise NoAnswer(f"no parsable line within {self.timeout_s:.1f}s")


class ModbusReplyError(AdapterError):
    """The device answered with a Modbus exception."""
