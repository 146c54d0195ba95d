"""``midbrain hub``: serve the hub's API until SIGTERM."""

import asyncio
import logging

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.api import create_app
from hub.inference import WindowModel
from hub.settings import HubSettings
from servicekit.http import HttpServer

log = logging.getLogger(__name__)


async def run_hub(settings: HubSettings, community: Community, mqtt: MqttEndpoint, stop: asyncio.Event,
                  *, ready: asyncio.Event | None = None) -> None:
    # Verified before anything listens: a model that fails its manifest stops the start (ModelError).
    model = WindowModel(settings.model_dir)
    server = HttpServer(create_app(settings, community, mqtt, ready=ready, model=model),
                        settings.http_host, settings.http_port)
    log.info("hub for %s listening on %s", community.id, server.url)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(server.serve(), name="hub-http")
        await stop.wait()
        server.stop()
