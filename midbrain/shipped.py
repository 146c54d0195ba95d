"""Secrets that ship in this repository, and the refusal to run a service on them.

config/demo.toml publishes a community HMAC key, a device salt, the city's operator token
and the city's Ed25519 key pair, so that ``midbrain demo`` runs with no setup. Anyone can
read them, so outside the demo no service may use them. A configuration is the demo's only
when its file says so at the top (``demo = true``, read from the file itself, never from
the environment), and even then its services listen on loopback addresses only, so that a
copy of the demo file put on a network still refuses.

Values are recognised by their SHA-256, so that a copy of demo.toml with the flag removed
(or a key pasted from it into a deployment config) is refused too. A public key is listed
when its private half ships: trusting it means trusting items anyone can sign.
tests/midbrain/test_shipped_secrets.py keeps this list complete for every file under config/
and midbrain/defaults/.
"""

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from contract.endpoints import is_loopback
from midbrain.configfile import read_toml

__all__ = ["SHIPPED_SHA256", "is_demo_file", "refusals", "secret_settings"]

# sha256(value) -> where the value ships.
SHIPPED_SHA256: dict[str, str] = {
    "c81c663b962cade62938620f9a9d8cabc851d3b3efc8da0854b14dfc57fde561":
        "config/demo.toml bridge.community_key, city.community_keys.xihu-demo",
    "812f551713915becd185f45bb7fabfaf2995e6aa67208308e5d9d7b52d2261b8": "config/demo.toml bridge.device_salt",
    "6cf8615b0cfa46e9c485a8e0a665341473added4b8b5d727b687ef815e266dc1": "config/demo.toml city.operator_token",
    "f405b8018bc511d53fda6de144d838218a49d3f83e5c41c093b0bd8fdabceeca": "config/demo.toml city.signing_key",
    "f5902f48157ac28ca925d58739d04147dffa202e0a28d913fad7adc80fb6be94":
        "config/demo.toml hub.city_public_key, bridge.city_public_key (its private half ships too)",
}

# Settings that hold a secret (or a public key whose private half may ship) although not typed
# SecretStr: recognised by the name's ending.
_SECRET_NAMES = ("password", "token", "salt", "_key", "_keys")

# What each service runs on: the sections it reads, and the addresses it listens on.
SERVICE_SECTIONS: dict[str, tuple[str, ...]] = {"hub": ("hub", "mqtt"), "bridge": ("bridge", "mqtt"),
                                                "city": ("city",)}
_LISTENS = {"hub": ("hub.http_host",), "bridge": ("bridge.http_host",), "city": ("city.http_host",)}


def _digest(value: str) -> str:
    return hashlib.sha256(value.strip().encode()).hexdigest()


def secret_settings(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted name, value) of every non-empty secret in ``model`` and the models inside it."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        yield from _secrets_in(dotted, value, name.endswith(_SECRET_NAMES))


def _secrets_in(dotted: str, value: Any, named_secret: bool) -> Iterator[tuple[str, str]]:
    if isinstance(value, BaseModel):
        yield from secret_settings(value, dotted + ".")
    elif isinstance(value, SecretStr):
        if value.get_secret_value():
            yield dotted, value.get_secret_value()
    elif isinstance(value, str):
        if named_secret and value:
            yield dotted, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secrets_in(f"{dotted}.{key}", item, named_secret)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _secrets_in(f"{dotted}.{i}", item, named_secret)


def is_demo_file(path: Path) -> bool:
    """The file itself says it is the demo's (``demo = true`` at its top level)."""
    return read_toml(path).get("demo") is True


def refusals(cfg: BaseModel, path: Path, service: str) -> list[str]:
    """Why ``service`` must not start on ``cfg`` (read from ``path``); empty when it may."""
    demo = is_demo_file(path)
    problems = []
    if not demo:
        for section in SERVICE_SECTIONS[service]:
            for dotted, value in secret_settings(getattr(cfg, section), section + "."):
                where = SHIPPED_SHA256.get(_digest(value))
                if where is None:
                    continue
                shipped_in = where.split(" ")[0]
                if dotted.endswith("public_key"):
                    problems.append(f"{dotted} is the demo's published key pair (its private half ships in "
                                    f"{shipped_in}); anyone can sign what this service would trust")
                else:
                    problems.append(f"{dotted} is the demo's published value (shipped in {shipped_in}); "
                                    "anyone can read it")
    else:
        for dotted in _LISTENS[service]:
            section, key = dotted.split(".")
            host = getattr(getattr(cfg, section), key)
            if not is_loopback(host):
                problems.append(f"{dotted} = {host!r}: a demo configuration (demo = true) runs on published "
                                "secrets and listens on loopback addresses only")
    return problems
