"""Device registry: what is provisioned, and what is online.

Provisioned devices come from the community configuration; gateway birth and death
and the time each device was last heard from decide online state.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from contract.classes import DeviceClass
from contract.topology import Community


@dataclass
class DeviceState:
    id: str
    gateway: str
    building: str
    device_class: DeviceClass
    name: str
    last_seen: float | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    last_quality: dict[str, str] = field(default_factory=dict)  # reason, for last values that are not good
    messages: int = 0


@dataclass
class GatewayState:
    id: str
    building: str
    online: bool = False
    boot: str | None = None
    software: str = ""
    changed_at: float | None = None
    health: dict[str, object] = field(default_factory=dict)  # the latest GatewayHealth
    stopped_cleanly: bool = False  # its last death was announced (a planned stop), not its Last Will
    rebirth_asked: dict[str, object] | None = None  # the hub's last request for a rebirth: at, reason, detail


class Registry:
    MAX_ANNOUNCED_RUNS = 10_000  # (gateway, boot) pairs remembered for attribution

    def __init__(self, community: Community, *, offline_after_s: float) -> None:
        self.community = community
        self.offline_after_s = offline_after_s
        self.gateways = {g.id: GatewayState(g.id, g.building) for g in community.gateways}
        # Agent runs (gateway, boot) announced by a birth, newest last; bounded.
        self.announced: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.devices = {
            d.id: DeviceState(d.id, d.gateway, community.building_of(d), d.device_class, d.name)
            for d in community.devices
        }

    def online(self, device: DeviceState, now: float | None = None) -> bool:
        gateway = self.gateways[device.gateway]
        if not gateway.online or device.last_seen is None:
            return False
        return (now or time.time()) - device.last_seen <= self.offline_after_s

    def birth(self, gateway_id: str, boot: str, software: str, at: float) -> None:
        gw = self.gateways[gateway_id]
        gw.online, gw.boot, gw.software, gw.changed_at = True, boot, software, at
        gw.stopped_cleanly = False
        self.announced[(gateway_id, boot)] = None
        if len(self.announced) > self.MAX_ANNOUNCED_RUNS:
            self.announced.popitem(last=False)

    def restore_runs(self, runs: list[tuple[str, str, str, float]]) -> None:
        """Agent runs a previous hub run saw born (oldest first), so that readings the broker
        queued while the hub was down are attributed before the retained births arrive."""
        for gateway, boot, software, _ in runs:
            if gateway in self.gateways:
                self.announced[(gateway, boot)] = None
                self.gateways[gateway].boot, self.gateways[gateway].software = boot, software

    def adopt(self, gateway_id: str, device_id: str, device_class: DeviceClass) -> bool:
        """Register a device a gateway announced; False if it is already known (or elsewhere)."""
        if device_id in self.devices:
            return False
        self.devices[device_id] = DeviceState(device_id, gateway_id, self.gateways[gateway_id].building,
                                              device_class, "")
        return True

    def death(self, gateway_id: str, boot: str, at: float, *, clean: bool = False) -> bool:
        """Mark offline; ignore a death from an earlier run (its will may arrive late).
        ``clean``: the agent announced its own stop, rather than its Last Will speaking for it."""
        gw = self.gateways[gateway_id]
        if gw.boot not in (None, boot):
            return False
        gw.online, gw.changed_at, gw.stopped_cleanly = False, at, clean
        return True

    def seen(self, device_id: str, at: float, values: dict[str, float], quality: dict[str, str] | None = None) -> None:
        d = self.devices[device_id]
        if d.last_seen is None or at >= d.last_seen:  # a replayed older reading is history, not the present
            d.last_values.update(values)
            if quality or d.last_quality:  # most readings: all good, before and now
                _mark_quality(d, values, quality or {})
        d.last_seen = max(at, d.last_seen or at)
        d.messages += 1

    def online_count(self) -> int:
        now = time.time()
        return sum(self.online(d, now) for d in self.devices.values())


def _mark_quality(d: DeviceState, values: dict[str, float], quality: dict[str, str]) -> None:
    """Keep the reason of each last value that is not good. A point read again is as good as
    this reading says; a point not read this time keeps its last value, marked."""
    for name in values:
        reason = quality.get(name, "good")
        if reason == "good":
            d.last_quality.pop(name, None)
        else:
            d.last_quality[name] = reason
    for name, reason in quality.items():
        if name not in values and reason != "good" and name in d.last_values:
            d.last_quality[name] = reason
