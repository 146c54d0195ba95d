"""The one configuration loader, and the errors a person reads when a file is wrong.

A config file is TOML; every key can be overridden from the environment as
``MIDBRAIN_<SECTION>__<KEY>`` (for example ``MIDBRAIN_HUB__HTTP_PORT=8301``).
:func:`load_settings` reads a file into a root model (pydantic-settings: the file, then
the environment over it) and validates it once. Errors name where the value came from
(the file, or the environment variable), the key and the reason; an unknown key, in the
file or in a ``MIDBRAIN_*__*`` variable, gets the nearest known one.

This module imports no service's settings: the root models live with their readers
(:mod:`midbrain.config` for the whole file, :mod:`midbrain.edge_config` for a gateway).
"""

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

__all__ = ["SECTIONS", "ConfigError", "ConfigFile", "load_settings"]

ENV_PREFIX = "MIDBRAIN_"
# The file's sections ("demo" is a flag); tests/midbrain/test_config.py keeps every root
# model's fields equal to these.
SECTIONS = ("demo", "community", "mqtt", "hub", "edge", "bridge", "city", "simulate")


class ConfigFile(BaseSettings):
    """Base of a root model, whose fields are the file's sections: ``MIDBRAIN_<SECTION>__<KEY>``
    overrides the file, an unknown key is an error, and the result is immutable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)


Root = TypeVar("Root", bound=ConfigFile)


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists one line per error."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML, or ConfigError naming the file (and the line of a syntax error)."""
    if not path.is_file():
        raise ConfigError(path, [f"{path}: no such file"])
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"{path}: TOML syntax error: {exc}"]) from exc


def load_settings(path: str | Path, root: type[Root], **overrides: Any) -> Root:
    """Read ``path`` into ``root``, environment overrides applied, validated; raise :class:`ConfigError`."""
    path = Path(path)
    read_toml(path)  # syntax first, for a message with the line number
    unknown = check_environment(root)
    if unknown:
        raise ConfigError(path, unknown)

    class _FromFile(root):  # type: ignore[valid-type,misc]
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
        raise ConfigError(path, explain(exc, root, path)) from exc
    return root.model_construct(**{name: getattr(loaded, name) for name in root.model_fields})


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
