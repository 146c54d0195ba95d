"""``midbrain hub``: serve the hub's API until SIGTERM."""

import asyncio
import logging
from pathlib import Path

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.api import create_app
from hub.inference import WindowModel
from hub.settings import HubSettings
from servicekit.http import HttpServer
from servicekit.lifecycle import write_json_atomically

log = logging.getLogger(__name__)


async def run_hub(settings: HubSettings, community: Community, mqtt: MqttEndpoint, stop: asyncio.Event,
                  *, ready: asyncio.Event | None = None, stats_file: Path | None = None) -> None:
    # Verified before anything listens: a model that fails its manifest stops the start (ModelError).
    model = WindowModel(settings.model_dir)
    app = create_app(settings, community, mqtt, ready=ready, model=model)
    server = HttpServer(app, settings.http_host, settings.http_port)
    log.info("hub for %s listening on %s", community.id, server.url)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(server.serve(), name="hub-http")
        await stop.wait()
        server.stop()
    hub = getattr(app.state, "hub", None)
    if stats_file is not None and hub is not None:
        write_json_atomically(stats_file, hub.stats())  # final counts, after the last summary
