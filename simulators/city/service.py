"""``midbrain city``: the reference city platform as a long-lived process."""

import asyncio
import gc
import logging
from pathlib import Path

from servicekit.http import HttpServer
from servicekit.lifecycle import write_json_atomically
from simulators.city.app import create_app
from simulators.city.mqtt_ingest import CityMqtt
from simulators.city.receiver import BatchReceiver
from simulators.city.store import CityStore
from simulators.settings import CitySettings

log = logging.getLogger(__name__)


async def run_city(settings: CitySettings, stop: asyncio.Event, *, ready: asyncio.Event | None = None,
                   stats_file: Path | None = None) -> None:
    store = CityStore(settings.database)
    keys = {c: k.get_secret_value().encode() for c, k in settings.community_keys.items()}
    server = HttpServer(create_app(store, keys, settings.capture, settings.signing_key.get_secret_value(),
                                   settings.operator_token.get_secret_value()), settings.http_host, settings.http_port,
                        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
                        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None)
    log.info("city platform listening on %s", server.url)
    city_mqtt = CityMqtt(settings.mqtt, BatchReceiver(store, keys), settings.capture) if settings.mqtt else None
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve(), name="city-http")
            if city_mqtt is not None:
                tg.create_task(city_mqtt.link.run(stop), name="city-mqtt")
            await server.started()
            # Everything loaded at start-up is left out of garbage collection from here on:
            # each batch decodes thousands of objects, and full collections walked them all
            # (measured in `benchmarks/bridge_drain.py`: about 10% of the city's CPU).
            gc.freeze()
            if ready is not None:
                ready.set()
            await stop.wait()
            server.stop()
    finally:
        if stats_file is not None:
            write_json_atomically(stats_file, store.stats())
        store.close()
