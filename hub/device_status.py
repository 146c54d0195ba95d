"""Device status: each device's changes between online and offline, recorded with the reason
(in the twin's status history), and an alert when a device that was reporting stops."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from hub.registry import Registry
from hub.twin import TwinStore
from servicekit.lifecycle import wait_or_stop

# (at, device, metric, kind, score, severity): how an offline device is raised
RaiseAlert = Callable[[float, str, str, str, float, str], Awaitable[object]]


class StatusWatch:
    def __init__(self, twin: TwinStore, registry: Registry, raise_alert: RaiseAlert, *, offline_after_s: float,
                 planned_stop_grace_s: float, started: float) -> None:
        self.twin = twin
        self.registry = registry
        self.raise_alert = raise_alert
        self.offline_after_s = offline_after_s
        self.planned_stop_grace_s = planned_stop_grace_s
        self.started = started  # the hub's start: devices are not called offline before they could report
        self._last: dict[str, bool] | None = None
        # Devices that were reporting when their gateway announced a planned stop, by gateway:
        # alarmed only if the gateway stays away longer than planned_stop_grace_s.
        self._planned: dict[str, list[str]] = {}

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not await wait_or_stop(stop, interval_s):
            await self.check(time.time())

    async def check(self, now: float) -> None:
        """Record what changed since the last check; raise what needs a person."""
        if self._last is None:
            self._last = await asyncio.to_thread(self.twin.last_status)
        last, planned = self._last, self._planned
        for d in self.registry.devices.values():
            online = self.registry.online(d, now)
            if last.get(d.id) == online:
                continue
            if not online and now - self.started < self.offline_after_s:
                continue  # just started: its devices' readings may not have arrived yet
            gateway = self.registry.gateways[d.gateway]
            if online:
                reason = "reporting"
            elif not gateway.online:
                # A planned stop (the agent said so) is recorded, not alarmed at once: an
                # engineer's restart of a gateway would raise one alert per device behind it.
                reason = "gateway-stopped" if gateway.stopped_cleanly else "gateway-offline"
            else:
                reason = "never-heard" if d.last_seen is None else "stale"
            await asyncio.to_thread(self.twin.status_change, d.id, now, online, reason)
            if not online and reason in ("stale", "gateway-offline") and last.get(d.id) is True:
                # A device that was reporting and stopped: someone should look (one alert a drop).
                await self.raise_alert(now, d.id, "status", "offline", 0.0, "warning")
            if reason == "gateway-stopped" and last.get(d.id) is True:
                planned.setdefault(d.gateway, []).append(d.id)
            last[d.id] = online
        for gateway_id in list(planned):
            gateway = self.registry.gateways[gateway_id]
            if gateway.online:
                del planned[gateway_id]  # back in time: nothing to raise
            elif now - (gateway.changed_at or now) >= self.planned_stop_grace_s:
                for device_id in planned.pop(gateway_id):
                    await self.raise_alert(now, device_id, "status", "offline", 0.0, "warning")
