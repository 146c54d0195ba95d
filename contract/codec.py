"""Encode and decode wire payloads (UTF-8 JSON), with reasons a person can act on."""

import json
from collections.abc import Iterable
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from contract.downlink import DownlinkAck, SignedItem
from contract.messages import (
    Ack,
    Alert,
    Backlog,
    Birth,
    Command,
    Death,
    Event,
    GatewayHealth,
    HubSummary,
    Telemetry,
)
from contract.topics import TopicKind

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BACKLOG_BYTES = 1024 * 1024  # what a hub accepts as one backlog
BACKLOG_MAX_BUNDLE_BYTES = 256 * 1024  # what an agent packs into one (plus at most one message more)

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """A payload that does not satisfy the contract."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def encode(message: BaseModel) -> bytes:
    """Compact UTF-8 JSON, without ``None`` fields."""
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()


def pack_backlog(items: Iterable[tuple[str, bytes]]) -> bytes:
    """A :class:`~contract.messages.Backlog` payload of already-encoded ``(topic, payload)`` pairs,
    spliced rather than re-encoded (each payload is a JSON object from :func:`encode`)."""
    body = b",".join(b'{"topic":%s,"message":%s}' % (json.dumps(topic).encode(), payload) for topic, payload in items)
    return b'{"v":1,"items":[' + body + b"]}"


def decode_as(model: type[M], payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> M:
    """Decode ``payload`` into ``model`` or raise :class:`DecodeError`."""
    if len(payload) > max_bytes:
        raise DecodeError("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid-utf8", str(exc)) from exc
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise DecodeError("invalid-json", first["msg"]) from exc
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise DecodeError("schema", f"{where}: {first['msg']}") from exc


def decode(kind: TopicKind, payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> BaseModel:
    """Decode the payload of a message that arrived on a topic of ``kind``."""
    if kind is TopicKind.STATE:
        # Birth and death share the retained state topic; "state" tells them apart.
        try:
            return decode_as(Birth, payload, max_bytes=max_bytes)
        except DecodeError as exc:
            try:
                return decode_as(Death, payload, max_bytes=max_bytes)
            except DecodeError:
                raise exc from None
    return decode_as(_MODELS[kind], payload, max_bytes=max_bytes)


_MODELS: dict[TopicKind, type[BaseModel]] = {
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.EVENT: Event,
    TopicKind.COMMAND: Command,
    TopicKind.ACK: Ack,
    TopicKind.HEALTH: GatewayHealth,
    TopicKind.SUMMARY: HubSummary,
    TopicKind.BACKLOG: Backlog,
    TopicKind.ALERT: Alert,
    TopicKind.DOWNLINK: SignedItem,
    TopicKind.DOWNLINK_ACK: DownlinkAck,
}
