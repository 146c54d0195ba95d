"""The configuration file as a gateway's edge agent reads it.

The same file, loader, ``MIDBRAIN_<SECTION>__<KEY>`` overrides and error messages as
:mod:`midbrain.config`; the difference is what gets imported. The agent validates its own
sections (community, mqtt, edge) in full and takes the others as plain tables, so that its
process loads none of the hub's, bridge's or city's settings (the hub's pull in its
accounts and sqlite3: about 2 MB of a gateway's 40 MB budget). ``midbrain config check``
and each service validate those sections; a wrong key in one is their error to report,
and an unknown section is still an error here.
"""

from pathlib import Path
from typing import Any

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.settings import EdgeSettings
from midbrain.configfile import ConfigError, ConfigFile, load_settings

__all__ = ["ConfigError", "EdgeConfig", "load_edge_config"]

# Another service's section: a table, checked by that service and by `midbrain config check`.
OtherSection = dict[str, Any]


class EdgeConfig(ConfigFile):
    demo: bool = False  # the demo's flag: the edge holds no shipped secret, so it reads nothing from it
    community: Community
    mqtt: MqttEndpoint = MqttEndpoint()
    edge: EdgeSettings = EdgeSettings()
    hub: OtherSection = {}
    bridge: OtherSection = {}
    city: OtherSection = {}
    simulate: OtherSection = {}


def load_edge_config(path: str | Path) -> EdgeConfig:
    """The community, broker and edge sections of ``path``, with environment overrides, validated."""
    return load_settings(path, EdgeConfig)
