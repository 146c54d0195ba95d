"""The uplink contract between a community's bridge and the city platform.

Only what is declared here may leave a community: the models forbid extra fields, so
an undeclared field cannot be serialised into a batch (the egress allow-list).
"""

import hashlib
import hmac
from typing import Annotated, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contract.classes import DeviceClass
from contract.ids import Ident
from contract.messages import MAX_PERIOD_S, FiniteFloat, HubHealth, UtilityUse, WorkOrderStats

CITY_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CellSummary(_Frozen):
    """Aggregates for one (building, device class): never a device or resident identifier."""

    building: Ident
    device_class: DeviceClass
    devices: int = Field(ge=0)
    online: int = Field(ge=0)
    readings: int = Field(ge=0)
    means: dict[str, FiniteFloat] = Field(default_factory=dict)


MERGED_BUILDING = "all"  # the cell that small household cells are merged into


class Suppression(_Frozen):
    """A count that concerned fewer than k households or residents, and what became of it."""

    what: str = Field(max_length=128)  # "cell b1/water_meter", "events service_request"
    action: Literal["merged", "suppressed"]
    into: str = Field(default="", max_length=128)  # where a merged count went


DeviceRef = Annotated[str, StringConstraints(pattern=r"^d-[0-9a-f]{20}$")]  # rust regex: $ is the very end


def device_ref(salt: bytes, community: str, device: str) -> str:
    """A device's identity for the city: HMAC-SHA256 of ``community/device`` under the
    community's secret salt, 80 bits. Stable across windows, different in every community,
    and not reversible without the salt (which never leaves the community)."""
    return "d-" + hmac.new(salt, f"{community}/{device}".encode(), hashlib.sha256).hexdigest()[:20]


class CommunitySummary(_Frozen):
    v: int = CITY_SCHEMA_VERSION
    key: str = Field(min_length=1, max_length=128)  # idempotency key of this summary
    revision: int = Field(default=0, ge=0, le=2**63 - 1)  # stored as an SQLite integer
    # 0: a window of the community's summary interval; otherwise a roll-up window of this
    # many seconds (hourly, say). Its key says so too.
    period_s: int = Field(default=0, ge=0, le=MAX_PERIOD_S)
    community: Ident
    window_start: FiniteFloat
    window_end: FiniteFloat
    devices: int = Field(ge=0)
    online: int = Field(ge=0)
    readings: int = Field(ge=0)
    cells: tuple[CellSummary, ...] = ()
    alerts: dict[str, int] = Field(default_factory=dict)
    events: dict[str, int] = Field(default_factory=dict)
    alerts_by_severity: dict[str, int] = Field(default_factory=dict)
    requests: dict[str, int] = Field(default_factory=dict)  # residents' requests by category (k applied)
    work_orders: WorkOrderStats | None = None
    environment: dict[str, FiniteFloat] = Field(default_factory=dict)  # community means: temperature, humidity, pm2_5
    utilities: UtilityUse | None = None
    hub: HubHealth | None = None
    # Shared devices (not one per household) offline at the window's end, each as a salted
    # per-community hash (device_ref), so that the city can follow one across windows
    # without learning which device it is.
    offline_devices: tuple[DeviceRef, ...] = Field(default=(), max_length=10_000)
    k: int = Field(default=5, ge=1)  # the small-cell threshold these counts were checked against
    suppressed: tuple[Suppression, ...] = ()


def egress_allow_list(model: type[BaseModel] | None = None) -> frozenset[str]:
    """Every field path that may leave a community in a batch, from the models above
    ("summaries[].cells[].means{}" for a mapping's values): the explicit schema of egress.
    A field not on it cannot be serialised (the models forbid extras). ``model``: the same
    for another body that goes up (the answers to the city's items, ``AckBatch``)."""
    paths: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            path = f"{prefix}{name}"
            paths.add(path)
            for inner in _models_in(info.annotation):
                walk(inner, path + ("[]." if _is_sequence(info.annotation) else "."))

    walk(model or Batch, "")
    return frozenset(paths)


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _is_sequence(annotation: object) -> bool:
    return get_origin(annotation) in (tuple, list)


class Batch(_Frozen):
    v: int = CITY_SCHEMA_VERSION
    key: str = Field(min_length=1, max_length=128)  # idempotency key of the batch
    community: Ident
    sent_at: FiniteFloat
    summaries: tuple[CommunitySummary, ...] = Field(min_length=1, max_length=10_000)


class BatchAck(_Frozen):
    key: str
    accepted: int = Field(ge=0)  # summaries new to the city
    duplicates: int = Field(ge=0)  # summaries it already had


# -- signatures: every batch is signed with its community's key (HMAC-SHA256) --------------

SIGNATURE_HEADER = "x-midbrain-signature"  # "hmac-sha256=<hex>" over the JSON body as sent before gzip
COMMUNITY_HEADER = "x-midbrain-community"
_SCHEME = "hmac-sha256="


def sign(key: bytes, body: bytes) -> str:
    return _SCHEME + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, signature: str) -> bool:
    """True if ``signature`` is ``key``'s over ``body`` (constant-time comparison)."""
    return signature.startswith(_SCHEME) and hmac.compare_digest(sign(key, body), signature)


# -- downlink requests: a community asks for its items, signed the same way ---------------

TIMESTAMP_HEADER = "x-midbrain-timestamp"
DOWNLINK_PATH = "/api/v1/downlink"
DOWNLINK_ACKS_PATH = "/api/v1/downlink/acks"
REQUEST_SKEW_S = 300.0  # how far a signed request's timestamp may be from the city's clock
# A downlink request may ask the city to hold it open this long when it has nothing to give
# (``?wait=``, long polling): one request per wait instead of one per poll, so that asking
# costs a community a few hundred bytes upward an hour, and an item comes down at once.
DOWNLINK_MAX_WAIT_S = 300.0


def downlink_request(key: bytes, community: str, after: int, ts: float) -> str:
    """Signature of "give community C its items after N" at time ts (so that a request
    cannot be replayed much later)."""
    return sign(key, f"GET {DOWNLINK_PATH}\n{community}\n{after}\n{ts:.3f}".encode())


# -- the MQTT transport: batches through the city's broker -------------------------------
#
# A batch is published (QoS 1) on city/v1/{community}/batches as one line of JSON header
# ({"community", "key", "signature", "encoding"}), a newline, then the body exactly as it
# would be POSTed (gzip or not). The city answers on city/v1/{community}/acks with a
# BatchAnswer; the bridge deletes the batch only on an answer that accepts it.

CITY_TOPIC_PREFIX = "city/v1"
CITY_BATCHES_FILTER = f"{CITY_TOPIC_PREFIX}/+/batches"


def city_batches_topic(community: str) -> str:
    return f"{CITY_TOPIC_PREFIX}/{community}/batches"


def city_acks_topic(community: str) -> str:
    return f"{CITY_TOPIC_PREFIX}/{community}/acks"


class MqttBatchHeader(_Frozen):
    community: Ident
    key: str = Field(min_length=1, max_length=128)
    signature: str = Field(max_length=200)
    encoding: Literal["", "gzip"] = ""


class BatchAnswer(_Frozen):
    """The city's answer to a batch that came by MQTT: ``status`` as HTTP would say it."""

    key: str = Field(min_length=1, max_length=128)
    status: int
    ack: BatchAck | None = None
    reason: str = Field(default="", max_length=1000)


def mqtt_batch(header: MqttBatchHeader, body: bytes) -> bytes:
    return header.model_dump_json().encode() + b"\n" + body


def parse_mqtt_batch(payload: bytes) -> tuple[MqttBatchHeader, bytes]:
    """ValueError (a pydantic ValidationError is one) if there is no valid header line."""
    head, sep, body = payload.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    return MqttBatchHeader.model_validate_json(head), body
