"""Test helpers: the reference city platform on a free port, and a bridge running beside it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt

from cloud_bridge.service import Bridge
from cloud_bridge.settings import BridgeSettings
from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, SummaryCell
from servicekit.http import HttpServer
from simulators.city.app import create_app
from simulators.city.store import CityStore


@asynccontextmanager
async def serving_city(tmp_path: Path, keys: dict[str, bytes], **app_options: Any
                       ) -> AsyncIterator[tuple[HttpServer, CityStore]]:
    """The city platform's app on a free port, knowing ``keys``."""
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, keys, **app_options), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    await server.started()
    try:
        yield server, store
    finally:
        server.stop()
        await task
        store.close()


@asynccontextmanager
async def running_bridge(community: str, mqtt: MqttEndpoint, **settings: Any) -> AsyncIterator[Bridge]:
    """A bridge of ``community`` connected to ``mqtt``; routine summaries do not linger."""
    bridge = Bridge(community, mqtt, BridgeSettings(**{"http_port": None, "batch_linger_s": 0,
                                                       "batch_interval_s": 0.1, **settings}))
    stop = asyncio.Event()
    run = asyncio.create_task(bridge.run(stop, drain_s=0))
    try:
        await bridge.link.wait_connected(10)
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(run, 20)
        bridge.outbox.close()
        bridge.downlink_state.close()


async def publish_summaries(mqtt: MqttEndpoint, community: str, windows: range, readings: int | None = None) -> None:
    """Hub summaries of 60-s windows, as the hub publishes them (readings: the window's number if None)."""
    async with aiomqtt.Client(mqtt.host, mqtt.port) as hub:
        for i in windows:
            await hub.publish(topics.hub_summary(community), encode(HubSummary(
                community=community, window_start=1_000.0 + 60 * i, window_end=1_060.0 + 60 * i,
                cells=(SummaryCell(building="b1", device_class="smoke", devices=5, online=5,
                                   readings=i if readings is None else readings),))), qos=1)
