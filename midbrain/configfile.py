"""Reading a configuration file, and the errors a person reads when it is wrong.

This module is light on purpose: ``midbrain edge`` loads its configuration through
:func:`load_edge_config` without the other services' settings or pydantic-settings,
so that a gateway's agent stays small. :mod:`midbrain.config` loads the whole file.
"""

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from edge.settings import EdgeSettings

ENV_PREFIX = "MIDBRAIN_"
# The file's sections; tests/midbrain/test_config.py keeps this equal to MidbrainConfig's fields.
SECTIONS = ("demo", "community", "mqtt", "hub", "edge", "bridge", "city", "simulate")  # "demo": a flag


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
    if environment_keys():
        from midbrain.config import load_config

        full = load_config(path)
        return EdgeConfig.model_construct(community=full.community, mqtt=full.mqtt, edge=full.edge)
    data = read_toml(path)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(path, [f"{path}: {key}: {unknown_key(key, sorted(SECTIONS))}" for key in unknown])
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, explain(exc, EdgeConfig, path)) from exc


def unknown_key(key: str, allowed: list[str]) -> str:
    """'unknown key', the nearest allowed key when one is close, and every allowed key."""
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return ("unknown key" + (f"; did you mean {near[0]}?" if near else "")
            + (f" (known keys here: {', '.join(allowed)})" if allowed else ""))


def environment_keys(environ: Mapping[str, str] | None = None) -> dict[tuple[str, ...], str]:
    """The ``MIDBRAIN_<SECTION>[__<KEY>…]`` variables that set configuration, by the key path
    they set (lower case, as pydantic-settings matches them). Other ``MIDBRAIN_*`` variables
    (tests' and CI's own) have no ``__`` and name no section, so they are left out."""
    found: dict[tuple[str, ...], str] = {}
    for name in environ if environ is not None else os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = tuple(name[len(ENV_PREFIX):].lower().split("__"))
        if len(parts) > 1 or parts[0] in SECTIONS:
            found[parts] = name
    return found


def source_of(loc: tuple[Any, ...], path: Path, environ: Mapping[str, str] | None = None) -> str:
    """Where the value at ``loc`` came from: the environment variable that set it, or the file."""
    keys = [str(p).lower() for p in loc]
    for parts, name in sorted(environment_keys(environ).items(), key=lambda kv: -len(kv[0])):
        if tuple(keys[:len(parts)]) == parts:
            return f"{name} (environment)"
    return str(path)


def check_environment(root: type[BaseModel], environ: Mapping[str, str] | None = None) -> list[str]:
    """A line for each ``MIDBRAIN_*__*`` variable that names no key, which pydantic-settings
    would otherwise ignore without a word."""
    problems = []
    for parts, name in sorted(environment_keys(environ).items(), key=lambda kv: kv[1]):
        current: Any = root
        for depth, part in enumerate(parts):
            fields = {(f.alias or n).lower(): f for n, f in current.model_fields.items()}
            if part not in fields:
                key = ".".join(parts[:depth + 1])
                problems.append(f"{name} (environment): {key}: {unknown_key(part, sorted(fields))}")
                break
            current = _model_in(fields[part].annotation)
            if current is None:  # a value (or a list or table of values): the rest is its own
                break
    return problems


def explain(exc: ValidationError, root: type[BaseModel], path: Path) -> list[str]:
    """One line per error: where the value came from (the file or an environment variable),
    the key's dotted path and the reason, with the nearest and all allowed keys where one is unknown."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        source = source_of(err["loc"], path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, err["loc"][:-1])
            lines.append(f"{source}: {key}: {unknown_key(str(err['loc'][-1]), allowed)}")
        elif err["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            given = err.get("input")
            shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
            lines.append(f"{source}: {key}: {err['msg']}{shown}")
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
