"""``midbrain edge``: run one gateway's agent until SIGTERM, then write its stats."""

import asyncio
import logging
from pathlib import Path

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.profiles import BusFile
from edge.settings import EdgeSettings
from servicekit.lifecycle import write_json_atomically

log = logging.getLogger(__name__)


async def run_edge(community: Community, gateway: str, mqtt: MqttEndpoint, settings: EdgeSettings,
                   stop: asyncio.Event, *, serial_ports: dict[str, str] | None = None,
                   stats_file: Path | None = None, buses: list[BusFile] | None = None) -> None:
    agent = EdgeAgent(community, gateway, mqtt, settings, serial_ports=serial_ports, buses=buses)
    log.info("edge agent for %s/%s: %d MQTT devices, %d serial buses", community.id, gateway, len(agent.devices),
             len(agent.pollers))
    try:
        await agent.run(stop)
    finally:
        if stats_file is not None:
            write_json_atomically(stats_file, agent.stats())
