"""``midbrain config new``: a deployment configuration with fresh secrets.

Two files, each mode 0600, each a whole configuration that ``midbrain config check`` accepts:

- ``community.toml`` for the community's hub, bridge and edges: the community HMAC key, the
  device salt and the city's *public* key;
- ``city.toml`` for the city platform only: the city's Ed25519 *private* key, its operators'
  token and the community's HMAC key (the city checks batches with it).

The community section is a skeleton (one building, one gateway, no devices) for the operator
to fill in. The files are written with ``O_EXCL``: nothing existing is overwritten.
"""

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from contract.downlink import new_signing_key

__all__ = ["NewConfig", "write_deployment_config"]


@dataclass(frozen=True)
class NewConfig:
    community: Path
    city: Path


def _s(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _community_section(community_id: str, name: str) -> str:
    return (f"[community]\nid = {_s(community_id)}\nname = {_s(name)}\n\n"
            "# Describe the community here: its buildings, gateways and devices (see config/demo.toml).\n"
            '[[community.buildings]]\nid = "b1"\nname = "1号楼"\n\n'
            '[[community.gateways]]\nid = "gw-b1"\nbuilding = "b1"\n')


def community_text(community_id: str, name: str, community_key: str, device_salt: str, city_public: str,
                   city_url: str) -> str:
    return (f"# Deployment configuration of community {community_id}, made by `midbrain config new`.\n"
            "# It holds secrets: keep it mode 0600, out of version control. Rotation: docs/security.md.\n\n"
            + _community_section(community_id, name) +
            '\n[mqtt]\nhost = "127.0.0.1"\nport = 1883\n\n'
            '[hub]\nhttp_host = "127.0.0.1"\ndatabase = "var/hub.sqlite3"\n'
            f"city_public_key = {_s(city_public)}\n\n"
            f'[bridge]\ncity_url = {_s(city_url)}\noutbox = "var/bridge-outbox.sqlite3"\n'
            "# HMAC-SHA256 key the city holds for this community (city.toml has the same).\n"
            f"community_key = {_s(community_key)}\n"
            "# Salt of the device references the city sees; never give it to the city.\n"
            f"device_salt = {_s(device_salt)}\n"
            f"city_public_key = {_s(city_public)}\n")


def city_text(community_id: str, name: str, community_key: str, signing_key: str, operator_token: str) -> str:
    return ("# The city platform's configuration, made by `midbrain config new`: its Ed25519 private key\n"
            "# and its operators' token. Give this file to the city only; keep it mode 0600.\n\n"
            + _community_section(community_id, name) +
            '\n[city]\nhttp_host = "127.0.0.1"\ndatabase = "var/city.sqlite3"\n'
            f"community_keys = {{ {_s(community_id)} = {_s(community_key)} }}\n"
            f"signing_key = {_s(signing_key)}\n"
            f"operator_token = {_s(operator_token)}\n")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)  # whatever the umask


def write_deployment_config(community_id: str, out: Path, *, name: str = "",
                            city_url: str = "http://127.0.0.1:8400") -> NewConfig:
    """Write community.toml and city.toml with new random secrets under ``out``; raise
    FileExistsError rather than overwrite either."""
    result = NewConfig(out / "community.toml", out / "city.toml")
    for path in (result.community, result.city):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwritten")
    out.mkdir(parents=True, exist_ok=True)
    community_key = secrets.token_urlsafe(32)
    device_salt = secrets.token_urlsafe(32)
    operator_token = secrets.token_urlsafe(32)
    signing_key, public = new_signing_key()
    name = name or community_id
    _write_private(result.community, community_text(community_id, name, community_key, device_salt, public, city_url))
    try:
        _write_private(result.city, city_text(community_id, name, community_key, signing_key, operator_token))
    except BaseException:
        result.community.unlink()
        raise
    return result
