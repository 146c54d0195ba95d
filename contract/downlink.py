"""The downlink contract: what the city platform sends down to a community, signed.

Each item is signed by the city with its Ed25519 key; every community holds the city's
public key (``bridge.city_public_key``, ``hub.city_public_key``), so the bridge and the
hub each verify what they are given, and neither can be made to accept an item the city
did not issue. The signature covers the item's JSON exactly as the city serialised it
(``SignedItem.item`` is that text), so no canonical form is needed.

Kinds:

- ``notice``: a notice or broadcast for staff (and, later, kiosks), e.g. an emergency.
- ``config``: a setting the city may change (the summary interval).
- ``model``: a new version of the hub's window model. The item carries the ONNX file's
  sha256 and its manifest; the bytes travel beside the item (``SignedItem.blob``) and
  are loaded only if their hash is the signed one.

Every item is acknowledged upward (``DownlinkAck``): applied, or refused with the reason.
"""

import base64
import binascii
import hashlib
import json
import re
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from contract.ids import Ident

DOWNLINK_SCHEMA_VERSION = 1
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A model's version becomes part of a folder name on the hub: letters and digits in runs
# joined by single '.', '_', '+' or '-' ("2.1.0", "3.0.0-rc1"), so never "..", "/" or "\\".
ModelVersion = Annotated[str, StringConstraints(min_length=1, max_length=32,
                                                pattern=r"^[0-9A-Za-z]+(?:[._+-][0-9A-Za-z]+)*$")]
# The ONNX file's name inside that folder: one plain name, never the manifest's own.
MODEL_FILE_NAME = r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}\.onnx$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Notice(_Frozen):
    kind: Literal["notice"] = "notice"
    level: Literal["info", "warning", "emergency"] = "info"
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=5000)
    audience: Literal["staff", "residents", "all"] = "all"


class ConfigChange(_Frozen):
    """Settings the city may change in a community, and nothing else."""

    kind: Literal["config"] = "config"
    summary_interval_s: float | None = Field(default=None, ge=30, le=86400)


class ModelUpdate(_Frozen):
    kind: Literal["model"] = "model"
    # Which of the hub's models: the window model, or a pattern detector's (hub/patterns.py).
    name: Literal["window_anomaly", "water_leak", "elevator_fault"] = "window_anomaly"
    version: ModelVersion
    sha256: Sha256  # of the ONNX file
    size: int = Field(gt=0, le=700 * 1024)  # base64 of it fits a 1 MiB MQTT message (MAX_BACKLOG_BYTES)
    manifest: dict[str, Any]  # the model folder's manifest.json, whose sha256 must be the same

    @field_validator("manifest")
    @classmethod
    def _safe_file_name(cls, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest.get("file", "model.onnx")
        if not isinstance(name, str) or not re.fullmatch(MODEL_FILE_NAME, name):
            raise ValueError(f"the manifest names an unsafe file {name!r} (expected a plain name ending in .onnx)")
        return manifest


class DownlinkItem(_Frozen):
    v: int = DOWNLINK_SCHEMA_VERSION
    seq: int = Field(ge=1)  # per community, increasing
    community: Ident
    issued_at: float
    expires_at: float | None = None
    body: Notice | ConfigChange | ModelUpdate = Field(discriminator="kind")


class SignedItem(_Frozen):
    """An item as it travels: its JSON text, the city's signature over those bytes
    (Ed25519, base64), and for a model its file (base64), which the signature does not
    cover (its sha256, inside the item, does)."""

    item: str = Field(max_length=64 * 1024)
    sig: str = Field(max_length=200)
    blob: str = Field(default="", max_length=1024 * 1024)


class DownlinkAck(_Frozen):
    seq: int = Field(ge=1)
    status: Literal["applied", "refused"]
    reason: str = Field(default="", max_length=500)
    at: float


class AckBatch(_Frozen):
    community: Ident
    acks: tuple[DownlinkAck, ...] = Field(min_length=1, max_length=1000)


class DownlinkRefused(ValueError):
    """An item that must not be applied, with the reason (reported upward)."""


# -- keys ----------------------------------------------------------------------------------
# cryptography is imported where a key is used: every process that decodes the contract
# loads this module, and the edge agent, which never sees a downlink item, would carry
# its 6 MB (a bundled OpenSSL) on a gateway with a 40 MB budget.

def new_signing_key() -> tuple[str, str]:
    """A fresh city key pair: (private, public), each 32 raw bytes in base64."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return base64.b64encode(raw).decode(), public_key_of(base64.b64encode(raw).decode())


def public_key_of(private_b64: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64)).public_key()
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def sign_item(private_b64: str, item: DownlinkItem, blob: bytes = b"") -> SignedItem:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = item.model_dump_json()
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return SignedItem(item=text, sig=base64.b64encode(key.sign(text.encode())).decode(),
                      blob=base64.b64encode(blob).decode() if blob else "")


def open_item(public_b64: str, signed: SignedItem, community: str,
              now: float | None = None) -> tuple[DownlinkItem, bytes]:
    """The verified item and its blob, or DownlinkRefused saying why not."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    except (ValueError, binascii.Error) as exc:
        raise DownlinkRefused(f"the city public key configured here is not valid: {exc}") from None
    try:
        key.verify(base64.b64decode(signed.sig, validate=True), signed.item.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        raise DownlinkRefused("bad signature: not signed by the city's key, or altered on the way") from None
    try:
        item = DownlinkItem.model_validate_json(signed.item)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DownlinkRefused(f"signed but not a valid item: {'.'.join(map(str, first['loc']))}: {first['msg']}") \
            from None
    if item.community != community:
        raise DownlinkRefused(f"item for community {item.community!r}, not this one ({community!r})")
    if item.expires_at is not None and item.expires_at < (time.time() if now is None else now):
        raise DownlinkRefused(f"expired at {item.expires_at:.0f}")
    blob = b""
    if isinstance(item.body, ModelUpdate):
        try:
            blob = base64.b64decode(signed.blob, validate=True)
        except (ValueError, binascii.Error):
            raise DownlinkRefused("model file is not valid base64") from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != item.body.sha256:
            raise DownlinkRefused(f"model file sha256 {digest} is not the signed {item.body.sha256}")
        if item.body.manifest.get("sha256") != item.body.sha256:
            raise DownlinkRefused("model manifest names another sha256 than the signed one")
    return item, blob


def envelope(signed: SignedItem) -> bytes:
    return json.dumps(signed.model_dump(), separators=(",", ":")).encode()
