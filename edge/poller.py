"""One bus: its devices polled in turn, commands run between polls.

The link is opened here and shared by every driver on the bus: a serial port (a
pseudo-terminal or a real adapter plug in the same way) or, for Modbus TCP, one
connection to a server that answers for every unit id on the bus. When the link fails
(USB adapter unplugged, TCP connection refused or cut) every device on it counts a
failed poll (and goes offline after its ``offline_after``), and the link is reopened
until it is back: a serial port every ``reopen_s``; a TCP connection after a jittered
backoff from ``reopen_s`` doubling up to ``reopen_max_s``, reset by the first good poll.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.profiles import MODBUS, BusFile, BusSpec, DeviceEntry, ModelSpec, TcpBusSpec
from edge.reporting import ReportFilter
from firmware_adapters import AdapterError
from firmware_adapters.drivers import (Cjt188Driver, Dlt645Driver, Driver, LineDriver, ModbusReplyError, NoAnswer,
                                       Pms5003Driver)
from firmware_adapters.serial_transport import SerialTransport, TransportError
from servicekit.backoff import Backoff
from servicekit.lifecycle import wait_or_stop
from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)

Reading = Callable[[str, float, dict[str, float], dict[str, str]], None]  # device, ts, values, quality
DeviceEvent = Callable[[str, str, str, dict[str, Any]], None]  # device, event, severity, data


class CommandRefused(Exception):
    """A command this bus will not run; the message is the reason given to the hub."""


@dataclass
class DeviceState:
    entry: DeviceEntry
    model: ModelSpec
    interval_s: float
    report: ReportFilter
    next_due: float = 0.0
    failures: int = 0
    online: bool | None = None  # None until the first poll
    errors: int = 0
    driver: Driver | None = None
    read_now: bool = False
    disabled: set[str] = field(default_factory=set)  # points not reported (the hub's desired state)


@dataclass
class _Write:
    device: str
    point: str
    value: float
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class BusPoller:
    def __init__(self, bus: BusFile, on_reading: Reading, on_event: DeviceEvent) -> None:
        self.bus = bus
        self.spec = bus.bus
        self.on_reading = on_reading
        self.on_event = on_event
        self.devices: dict[str, DeviceState] = {}
        for d in bus.devices:
            model = bus.model_of(d)
            self.devices[d.id] = DeviceState(d, model, d.interval_s or model.interval_s,
                                             ReportFilter({p.name: p.deadband for p in model.points}, model.max_report_s,
                                                          every_poll=model.report == "every_poll"))
        self.counters = {"polls": 0, "poll_errors": 0, "port_errors": 0, "writes": 0}
        self._writes: asyncio.Queue[_Write] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._transport: SerialTransport | None = None
        self._modbus: Any = None  # pymodbus's serial or TCP client, imported only for a Modbus bus
        self._throttle = LogThrottle()
        self._reconnect = Backoff(self.spec.reopen_s, self.spec.reopen_max_s) \
            if isinstance(self.spec, TcpBusSpec) else None

    # -- commands (called from the agent's event loop) ---------------------------------

    def read_now(self, device_id: str) -> None:
        self.devices[device_id].read_now = True
        self._wake.set()

    def set_interval(self, device_id: str, seconds: float) -> None:
        if not 0.05 <= seconds <= 86400:
            raise CommandRefused(f"interval {seconds}s outside 0.05-86400 s")
        state = self.devices[device_id]
        state.interval_s = seconds
        state.next_due = min(state.next_due, time.monotonic() + seconds)
        self._wake.set()

    def set_point_enabled(self, device_id: str, point: str, enabled: bool) -> None:
        state = self.devices[device_id]
        if all(p.name != point for p in state.model.points):
            raise CommandRefused(f"{device_id} has no point {point!r}")
        if enabled:
            state.disabled.discard(point)
        else:
            state.disabled.add(point)

    async def write(self, device_id: str, point: str, value: float, timeout_s: float = 5.0) -> None:
        state = self.devices[device_id]
        spec = next((p for p in state.model.points if p.name == point), None)
        if spec is None:
            raise CommandRefused(f"{device_id} has no point {point!r}")
        if not spec.writable:
            raise CommandRefused(f"not allowed: point {point!r} of {device_id} is not writable in its profile")
        if state.online is False:
            raise CommandRefused(f"device offline: {device_id} has not answered its last {state.failures} polls")
        job = _Write(device_id, point, value)
        await self._writes.put(job)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(job.done), timeout_s)
        except TimeoutError:
            raise CommandRefused(f"timed out: no result from {device_id} within {timeout_s:.0f}s") from None

    # -- the bus loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self._open()
                    await self._cycle(stop)
                except TransportError as exc:
                    delay = self._reconnect.next_delay() if self._reconnect else self.spec.reopen_s
                    self._port_failed(exc, delay)
                    self._close()
                    if await wait_or_stop(stop, delay):
                        return
        finally:
            self._close()

    async def _cycle(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            while not self._writes.empty():
                await self._do_write(self._writes.get_nowait())
            now = time.monotonic()
            due = [s for s in self.devices.values() if s.read_now or s.next_due <= now]
            for state in due:
                if stop.is_set():
                    return
                await self._poll(state)
                if self.spec.gap_ms:
                    await asyncio.sleep(self.spec.gap_ms / 1000)
            next_due = min(s.next_due for s in self.devices.values())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_due - time.monotonic()))
            except TimeoutError:
                pass

    async def _poll(self, state: DeviceState) -> None:
        started = time.monotonic()
        state.read_now = False
        state.next_due = started + state.interval_s
        assert state.driver is not None
        self.counters["polls"] += 1
        try:
            read = await asyncio.to_thread(state.driver.poll)
        except NoAnswer as exc:
            self._failed(state, str(exc))
            return
        except (TransportError, OSError) as exc:
            raise TransportError(str(exc)) from exc
        except AdapterError as exc:
            self._failed(state, str(exc))
            return
        except Exception as exc:  # a driver bug must not stop the bus
            log.exception("device %s: unexpected error from its driver", state.entry.id)
            self._failed(state, f"driver error: {exc}")
            return
        ts = time.time()
        if self._reconnect is not None:
            self._reconnect.reset()  # the link carries answers again
        if state.online is not True:
            state.online, state.failures = True, 0
            state.report.forget()
            self.on_event(state.entry.id, "device_online", "info", {"protocol": self.spec.protocol})
        state.failures = 0
        values = {k: v for k, v in self._scaled(state, read.values).items() if k not in state.disabled}
        due = state.report.due(values, ts)
        # Drivers name a failed point by its source (Modbus: by its name, which is its key too).
        quality = {p.name: "comm_error" for p in state.model.points
                   if (p.key in read.errors or p.name in read.errors) and p.name not in state.disabled}
        if read.errors:
            state.errors += len(read.errors)
        if due or quality:
            if not due:  # a message needs at least one metric; resend the freshest good one
                name, value = next(iter(values.items())) if values else (None, None)
                if name is None:
                    return
                due = {name: value}
            self.on_reading(state.entry.id, ts, due, quality)

    def _scaled(self, state: DeviceState, values: dict[str, float]) -> dict[str, float]:
        if self.spec.protocol in MODBUS:  # scale and offset were applied with the register map
            return values
        out = {}
        for p in state.model.points:
            raw = values.get(p.key)
            if raw is not None:
                out[p.name] = raw * p.scale + p.offset
        return out

    def _failed(self, state: DeviceState, reason: str) -> None:
        state.failures += 1
        state.errors += 1
        self.counters["poll_errors"] += 1
        allowed, suppressed = self._throttle.allow(f"poll-{state.entry.id}")
        if allowed:
            log.warning("device %s on %s: %s%s", state.entry.id, self.spec.link, reason,
                        f" ({suppressed} similar not logged)" if suppressed else "")
        if state.failures >= state.model.offline_after and state.online is not False:
            state.online = False
            self.on_event(state.entry.id, "device_offline", "warning",
                          {"reason": reason[:200], "failed_polls": state.failures})

    async def _do_write(self, job: _Write) -> None:
        state = self.devices[job.device]
        driver = state.driver
        try:
            if self.spec.protocol not in MODBUS or driver is None or not hasattr(driver, "write"):
                raise CommandRefused(f"not allowed: {self.spec.protocol} devices cannot be written")
            await asyncio.to_thread(driver.write, job.point, job.value)  # type: ignore[attr-defined]
            self.counters["writes"] += 1
            state.read_now = True
            job.done.set_result(None)
        except (CommandRefused, ModbusReplyError, NoAnswer, ValueError) as exc:
            job.done.set_exception(exc if isinstance(exc, CommandRefused) else CommandRefused(str(exc)))
        except TransportError as exc:
            job.done.set_exception(CommandRefused(f"link down: {exc}"))
            raise  # the bus reconnects

    # -- the port ------------------------------------------------------------------------

    async def _open(self) -> None:
        s = self.spec
        if s.protocol in MODBUS:
            from firmware_adapters.modbus import ModbusDriver

            if self._modbus is None:
                client = await asyncio.to_thread(self._connect_modbus)
                self._modbus = client
                for state in self.devices.values():
                    state.driver = ModbusDriver(client, int(state.entry.address),
                                                tuple(p.register() for p in state.model.points))
            return
        assert isinstance(s, BusSpec)
        if self._transport is not None:
            return
        transport = await asyncio.to_thread(SerialTransport, s.port, s.baudrate, min(0.05, s.timeout_s),
                                            parity=s.parity, bytesize=s.bytesize, stopbits=s.stopbits)
        self._transport = transport
        kw = {"timeout_s": s.timeout_s, "retries": s.retries}
        for state in self.devices.values():
            e, model = state.entry, state.model
            if s.protocol == "dlt645":
                # Keyed by source, like every other driver's values; _scaled maps sources to points.
                state.driver = Dlt645Driver(transport, e.address, {p.key: p.key for p in model.points}, **kw)
            elif s.protocol == "cjt188":
                state.driver = Cjt188Driver(transport, s.meter_type, e.address, **kw)
            elif s.protocol == "pms5003":
                driver = Pms5003Driver(transport, **kw)
                await asyncio.to_thread(driver.set_passive)
                state.driver = driver
            else:
                state.driver = LineDriver(transport, self.bus.line_format(), request=s.request.encode(),
                                          timeout_s=max(s.timeout_s, 0.1))

    def _connect_modbus(self) -> Any:
        """A connected pymodbus client for this bus (in a worker thread: connecting blocks)."""
        from pymodbus.client import ModbusSerialClient

        from firmware_adapters.modbus import tcp_client

        s = self.spec
        if isinstance(s, TcpBusSpec):
            client: Any = tcp_client(s.host, s.port, timeout_s=s.timeout_s, retries=s.retries)
        else:
            client = ModbusSerialClient(s.port, baudrate=s.baudrate, parity=s.parity, bytesize=s.bytesize,
                                        stopbits=s.stopbits, timeout=s.timeout_s, retries=s.retries)
        if not client.connect():
            client.close()
            raise TransportError(f"cannot {'connect to' if isinstance(s, TcpBusSpec) else 'open'} {s.link}")
        return client

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._modbus is not None:
            self._modbus.close()
            self._modbus = None

    def _port_failed(self, exc: Exception, retry_in_s: float) -> None:
        self.counters["port_errors"] += 1
        allowed, suppressed = self._throttle.allow("port")
        if allowed:
            log.warning("bus %s: %s; reopening in %.1fs%s", self.spec.link, exc, retry_in_s,
                        f" ({suppressed} similar not logged)" if suppressed else "")
        for state in self.devices.values():
            self._failed(state, f"{'link' if self._reconnect else 'port'} {self.spec.link}: {exc}")

    def error_counts(self) -> dict[str, int]:
        return {d: s.errors for d, s in self.devices.items()}

    def online_counts(self) -> tuple[int, int]:
        online = sum(s.online is True for s in self.devices.values())
        return online, sum(s.online is False for s in self.devices.values())
