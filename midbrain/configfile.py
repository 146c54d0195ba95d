"""Reading a configuration file, and the errors a person reads when it is wrong.

This module is light on purpose: ``midbrain edge`` loads its configuration through
:func:`load_edge_config` without the other services' settings or pydantic-settings,
so that a gateway's agent stays small. :mod:`midbrain.config` loads the whole file.
"""

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.settings import EdgeSettings

ENV_PREFIX = "MIDBRAIN_"
# The file's sections; tests/midbrain/test_config.py keeps this equal to MidbrainConfig's fields.
SECTIONS = ("community", "mqtt", "hub", "edge", "bridge", "city", "simulate")


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists one line per error."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


class EdgeConfig(BaseModel):
    """What an edge agent reads of the file. The other sections are checked by ``midbrain config check``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    community: Community
    mqtt: MqttEndpoint = MqttEndpoint()
    edge: EdgeSettings = EdgeSettings()


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML, or ConfigError naming the file (and the line of a syntax error)."""
    if not path.is_file():
        raise ConfigError(path, [f"{path}: no such file"])
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: TOML syntax error: {exc}"]) from exc


def load_edge_config(path: str | Path) -> EdgeConfig:
    """The community, broker and edge sections of ``path``, validated; raise :class:`ConfigError`.

    With ``MIDBRAIN_*`` overrides in the environment the whole file goes through
    :func:`midbrain.config.load_config`, which applies them; the result is the same."""
    path = Path(path)
    if any(name.startswith(ENV_PREFIX) for name in os.environ):
        from midbrain.config import load_config

        full = load_config(path)
        return EdgeConfig.model_construct(community=full.community, mqtt=full.mqtt, edge=full.edge)
    data = read_toml(path)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(path, [f"{path}: {key}: unknown key (known keys here: {', '.join(sorted(SECTIONS))})"
                                 for key in unknown])
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [f"{path}: {line}" for line in explain(exc, EdgeConfig)]) from exc


def explain(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per error: the key's dotted path and the reason, with the keys allowed where one is unknown."""
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
