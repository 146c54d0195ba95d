"""The whole configuration file, as every service but the edge agent reads it.

Loaded by :func:`midbrain.configfile.load_settings`, the one loader (see there for the
file format, the ``MIDBRAIN_<SECTION>__<KEY>`` overrides and the error messages); a
gateway's agent reads the same file through :mod:`midbrain.edge_config`.
"""

from pathlib import Path
from typing import Any

from cloud_bridge.settings import BridgeSettings
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.settings import EdgeSettings
from hub.settings import HubSettings
from midbrain.configfile import ConfigError, ConfigFile, load_settings
from simulators.settings import CitySettings, SimulateSettings

__all__ = ["ConfigError", "MidbrainConfig", "load_config"]


class MidbrainConfig(ConfigFile):
    # True only in config/demo.toml: its services may run on the secrets it publishes
    # (midbrain/shipped.py reads this from the file itself, never from the environment).
    demo: bool = False
    community: Community
    mqtt: MqttEndpoint = MqttEndpoint()
    hub: HubSettings = HubSettings()
    edge: EdgeSettings = EdgeSettings()
    bridge: BridgeSettings = BridgeSettings()
    city: CitySettings = CitySettings()
    simulate: SimulateSettings = SimulateSettings()


def load_config(path: str | Path, **overrides: Any) -> MidbrainConfig:
    """Read ``path``, apply environment overrides, validate; raise :class:`ConfigError`."""
    return load_settings(path, MidbrainConfig, **overrides)
