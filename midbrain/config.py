"""Load and validate a midbrain configuration file, once, at the edge of the program.

A config file is TOML; every key can be overridden from the environment as
``MIDBRAIN_<SECTION>__<KEY>`` (for example ``MIDBRAIN_HUB__HTTP_PORT=8301``).
Errors name where the value came from (the file, or the environment variable), the key
and the reason; an unknown key, in the file or in a ``MIDBRAIN_*__*`` variable, gets the
nearest known one.
"""

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cloud_bridge.settings import BridgeSettings
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.settings import EdgeSettings
from hub.settings import HubSettings
from midbrain.configfile import ENV_PREFIX, ConfigError, check_environment, explain, read_toml
from simulators.settings import CitySettings, SimulateSettings

__all__ = ["ConfigError", "MidbrainConfig", "load_config"]


class MidbrainConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

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
    path = Path(path)
    read_toml(path)  # syntax first, for a message with the line number
    unknown = check_environment(MidbrainConfig)
    if unknown:
        raise ConfigError(path, unknown)

    class _FromFile(MidbrainConfig):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path)

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(path, explain(exc, MidbrainConfig, path)) from exc
    return MidbrainConfig.model_construct(**{name: getattr(loaded, name) for name in MidbrainConfig.model_fields})
