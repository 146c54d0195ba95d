"""The city's items, from the bridge: verified and applied by :mod:`hub.downlink`, answered here.

At start the configuration and the models the city set before a restart are applied
again; each item that arrives afterwards is handled at the writer's flush and its answer
(a :class:`~contract.downlink.DownlinkAck`) published on its own task, so publishing never
holds up the writer. What an item changes is done through the callbacks it is given: a
configuration change (the summary interval) and a model load (:mod:`hub.model_reload`).
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt

from contract import topics
from contract.downlink import ConfigChange, DownlinkAck
from hub.downlink import DownlinkHandler, DownlinkStore
from hub.metrics import HubMetrics
from servicekit.mqtt import MqttLink, NotConnected

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class CityDownlink:
    def __init__(self, community: str, public_key: str, store: DownlinkStore, model_root: Path,
                 apply_config: Callable[[ConfigChange], None], load_model: Callable[[str, Path], str],
                 metrics: HubMetrics, publisher: MqttLink, *, publish_timeout_s: float) -> None:
        self.community = community
        self.store = store
        self.handler = DownlinkHandler(community, public_key, store, model_root, apply_config, load_model)
        self.metrics = metrics
        self.publisher = publisher
        self.publish_timeout_s = publish_timeout_s

    @property
    def counts(self) -> dict[str, int]:
        return self.handler.counts

    async def restore(self, *, keep_window_model: bool) -> None:
        """Apply again what the city set before a restart. ``keep_window_model``: the operator
        configured a model folder of their own (hub.model_dir), which wins."""
        change = await asyncio.to_thread(self.store.latest_config)
        if change is not None:
            self.handler.apply_config(change)
        folders = await asyncio.to_thread(self.store.latest_model_dirs, self.handler.model_root)
        for name, folder in folders.items():
            if name == "window_anomaly" and keep_window_model:
                continue
            try:
                self.handler.load_model(name, folder)
            except Exception as exc:  # ModelError, or onnxruntime's: the shipped model stays
                log.error("the %s model the city sent last does not load any more (%s); the shipped one stays",
                          name, exc)

    async def answer(self, raw: bytes, spawn: Spawn) -> None:
        """Verify and apply one signed item; its answer is published on a task of its own."""
        handle = self.handler.handle
        ack = await asyncio.to_thread(handle, raw) if len(raw) > 64 * 1024 else handle(raw)
        if ack is None:
            self.metrics.count("downlink_unreadable")
            return
        self.metrics.count(f"downlink_{ack.status}")
        spawn(self._publish_answer(ack), f"hub-downlink-answer-{ack.seq}")  # the answer is kept

    async def _publish_answer(self, ack: DownlinkAck) -> None:
        try:
            await self.publisher.publish(topics.hub_downlink_ack(self.community), ack.model_dump_json().encode(),
                                         qos=1, timeout=self.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            # The bridge hands the item again when no answer comes, and gets the kept answer.
            log.error("answer to city item %d not published (%s); the bridge will ask again", ack.seq, exc)
