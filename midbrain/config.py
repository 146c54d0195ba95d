"""Load and validate a midbrain configuration file, once, at the edge of the program.

A config file is TOML; every key can be overridden from the environment as
``MIDBRAIN_<SECTION>__<KEY>`` (for example ``MIDBRAIN_HUB__HTTP_PORT=8301``).
Errors name the file, the key and the reason.
"""

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
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
from simulators.settings import CitySettings, SimulateSettings


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists one line per error."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


class MidbrainConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MIDBRAIN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

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
    if not path.is_file():
        raise ConfigError(path, [f"{path}: no such file"])
    try:
        with path.open("rb") as fh:
            tomllib.load(fh)  # syntax first, for a message with the line number
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: TOML syntax error: {exc}"]) from exc

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
        raise ConfigError(path, [f"{path}: {line}" for line in _explain(exc, MidbrainConfig)]) from exc
    return MidbrainConfig.model_construct(**{name: getattr(loaded, name) for name in MidbrainConfig.model_fields})


def _explain(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, err["loc"][:-1])
            hint = f" (known keys here: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
            lines.append(f"{key}: {err['msg']}{shown}")
    return lines


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk the model along ``loc`` to list the keys allowed at that place."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return sorted(f.alias or name for name, f in fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
