"""The device twin at work: desired state set by staff, commands to the edge, their acks.

:class:`TwinStore` (:mod:`hub.twin`) keeps the documents and the command log; this sends
what a change of desired state asks of the edge, resends the whole desired state when a
gateway is born again (reconcile), records the edge's acks, asks gateways for a rebirth
when ingest lost their thread, and hands the desired thresholds to ingest.
"""

import asyncio
import logging
import time
from typing import Any

import aiomqtt

from contract import topics
from contract.codec import encode
from contract.messages import Command
from hub.accounts import Accounts
from hub.registry import Registry
from hub.thresholds import ThresholdWatch
from hub.twin import DesiredPatch, TwinStore, commands_for, merge, sync_state
from servicekit.mqtt import MqttLink, NotConnected

log = logging.getLogger(__name__)


class DeviceTwin:
    def __init__(self, store: TwinStore, registry: Registry, accounts: Accounts, thresholds: ThresholdWatch,
                 publisher: MqttLink, community: str, *, publish_timeout_s: float,
                 rebirth_min_interval_s: float) -> None:
        self.store = store
        self.registry = registry
        self.accounts = accounts
        self.thresholds = thresholds
        self.publisher = publisher
        self.community = community
        self.publish_timeout_s = publish_timeout_s
        self.rebirth_min_interval_s = rebirth_min_interval_s
        self._rebirths = 0  # rebirth commands sent, for their ids

    def restore(self) -> None:
        """The desired thresholds kept from earlier runs, to ingest."""
        for device in self.store.devices_with_desired():
            self.thresholds.set_limits(device, self.store.desired(device)[1])

    async def set_desired(self, device_id: str, patch: DesiredPatch, actor: str) -> dict[str, object]:
        """Change a device's desired state and send what the edge must do; KeyError, TwinError."""
        device = self.registry.devices[device_id]
        _, current, _, _ = self.store.desired(device_id)
        doc = merge(device, current, patch)
        version = await asyncio.to_thread(self.store.set_desired, device_id, doc, actor)
        await asyncio.to_thread(self.accounts.audit, actor, "device.desired", f"device:{device_id}",
                                {"patch": patch.model_dump(exclude_unset=True), "version": version})
        self.thresholds.set_limits(device_id, doc)
        commands = commands_for(device, doc, current)
        if commands:
            await self._send(device_id, version, commands, actor)
        return self.view(device_id)

    def view(self, device_id: str) -> dict[str, object]:
        """Desired and reported state of a device, and its latest commands."""
        device = self.registry.devices[device_id]
        version, doc, set_by, set_at = self.store.desired(device_id)
        commands = self.store.commands(device_id, 20)
        gateway = self.registry.gateways[device.gateway]
        return {
            "device": device_id,
            "desired": {"version": version, "set_by": set_by, "set_at": set_at, **doc},
            "reported": {"online": self.registry.online(device), "gateway_online": gateway.online,
                         "last_seen": device.last_seen, "last_values": device.last_values},
            "sync": sync_state(commands),
            "commands": commands,
        }

    async def acked(self, ack_id: str, result: str, reason: str, at: float) -> None:
        """The edge answered a command."""
        if await asyncio.to_thread(self.store.acked, ack_id, result, reason, at) and result != "ok":
            log.warning("command %s refused by the edge: %s %s", ack_id, result, reason)

    async def _send(self, device_id: str, version: int, commands: list[dict[str, Any]], actor: str) -> None:
        """Record a round of commands and publish them; a gateway that is offline gets the
        whole desired state when it is next born."""
        device = self.registry.devices[device_id]
        issued: list[Command] = await asyncio.to_thread(self.store.issue, device, version, commands, actor)
        if not self.registry.gateways[device.gateway].online:
            log.info("gateway %s offline: %d commands for %s wait for its next birth", device.gateway,
                     len(issued), device_id)
            return
        for cmd in issued:
            try:
                await self.publisher.publish(topics.gateway_command(self.community, device.gateway), encode(cmd),
                                             qos=1, timeout=self.publish_timeout_s)
            except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
                log.error("command %s to %s not sent (resent at the gateway's next birth): %s", cmd.id,
                          device.gateway, exc)
                return
            await asyncio.to_thread(self.store.sent, cmd.id)

    async def ask_rebirth(self, gateway: str, reason: str, detail: str) -> None:
        """Publish a rebirth command to ``gateway``: its agent publishes its birth again and
        reports every point on its next read, so the registry and the twin catch up."""
        self._rebirths += 1
        cmd = Command(id=f"rebirth-{int(time.time())}-{self._rebirths}", ts=time.time(), command="rebirth")
        log.warning("asking gateway %s for a rebirth (%s): %s", gateway, reason, detail)
        try:
            await self.publisher.publish(topics.gateway_command(self.community, gateway), encode(cmd), qos=1,
                                         timeout=self.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            log.error("rebirth request to %s not sent (asked again on its next message after %g s): %s", gateway,
                      self.rebirth_min_interval_s, exc)

    async def reconcile(self, gateway: str) -> None:
        """A gateway was born: send each of its devices' whole edge-side desired state."""
        for device_id in await asyncio.to_thread(self.store.devices_with_desired):
            device = self.registry.devices.get(device_id)
            if device is None or device.gateway != gateway:
                continue
            version, doc, _, _ = self.store.desired(device_id)
            commands = commands_for(device, doc, None)
            if commands:
                await self._send(device_id, version, commands, "hub:reconcile")
