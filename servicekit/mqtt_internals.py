"""The fast MQTT path: every private aiomqtt and paho-mqtt internal MqttLink relies on.

aiomqtt has no pipelined publish and no manual acknowledgement, and hands each message
through an asyncio queue as an aiomqtt Message; paho builds an MQTTMessage (with a lock and
a condition variable) for each one and reads a packet in three or more recv calls. The hub's
~27,000 msg/s comes from going around all of that, which means relying on private parts of
both libraries. They are all in this module, listed in :data:`INTERNALS`.

The guard: :func:`fast_path_usable` checks, once per process, that the installed versions are
those this was written for (:data:`WRITTEN_FOR`) and that every internal exists with the shape
relied on. If not, it logs one warning and MqttLink uses aiomqtt's public API instead:
slower, and correct. ``tests/servicekit/test_mqtt_internals.py`` names any internal an
upgrade changed.

Manual acknowledgement is the one thing the public path needs from below aiomqtt too:
aiomqtt 2.5 has no such option, so both paths call paho's own public ``manual_ack_set()``
and ``ack()`` on the paho client inside aiomqtt's. Should that client be gone, a link with
``manual_ack`` refuses to start (:class:`InternalsChanged`) rather than acknowledge messages
before they are safe.
"""

import asyncio
import importlib.metadata
import inspect
import logging
import select
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiomqtt
from paho.mqtt import _packet
from paho.mqtt import client as paho_mqtt

__all__ = ["INTERNALS", "WRITTEN_FOR", "InternalsChanged", "ack", "check", "fast_path_usable", "hook_publish_acks",
           "hook_raw_receiver", "publish_nowait", "read_in_bursts", "set_manual_ack", "uses_fast_path"]

log = logging.getLogger(__name__)

# The versions (requirements/all.lock) whose internals this module was written against.
WRITTEN_FOR = {"paho-mqtt": "2.2.0", "aiomqtt": "2.5.1"}

OnRaw = Callable[[str, bytes, int, int], None]  # topic, payload, mid, qos


class InternalsChanged(RuntimeError):
    """An internal that even the public path needs (manual acknowledgement) has changed."""


@dataclass(frozen=True)
class Internal:
    """One thing relied on below the public APIs, and how to tell it is still there."""

    name: str
    needed_for: Literal["fast", "manual_ack"]
    check: Callable[[aiomqtt.Client], str | None]  # a problem, or None


def _params(func: object) -> list[str]:
    return [p.name for p in inspect.signature(func).parameters.values()]  # type: ignore[arg-type]


def _method(attr: str, params: list[str]) -> Callable[[aiomqtt.Client], str | None]:
    def check(client: aiomqtt.Client) -> str | None:
        method = getattr(_paho(client), attr, None)
        if not callable(method):
            return "missing"
        found = _params(method)
        return None if found == params else f"takes ({', '.join(found)}), expected ({', '.join(params)})"
    return check


def _instance(attr: str, kind: type | tuple[type, ...]) -> Callable[[aiomqtt.Client], str | None]:
    def check(client: aiomqtt.Client) -> str | None:
        value = getattr(_paho(client), attr, None)
        return None if isinstance(value, kind) else f"is {type(value).__name__}, expected {kind}"
    return check


def _paho(client: aiomqtt.Client) -> Any:
    return getattr(client, "_client", None)


def _check_paho_client(client: aiomqtt.Client) -> str | None:
    paho = _paho(client)
    return None if isinstance(paho, paho_mqtt.Client) else f"is {type(paho).__name__}, expected paho Client"


def _check_in_packet(client: aiomqtt.Client) -> str | None:
    packet = getattr(_paho(client), "_in_packet", None)
    return None if isinstance(packet, dict) and {"command", "packet"} <= packet.keys() else "no command/packet dict"


def _check_dispatch(client: aiomqtt.Client) -> str | None:
    source = inspect.getsource(paho_mqtt.Client._packet_handle)
    return None if "self._handle_publish()" in source else "_packet_handle no longer calls self._handle_publish()"


def _check_decode_publish(client: aiomqtt.Client) -> str | None:
    params = _params(_packet.decode_publish)
    if params != ["header", "packet", "protocol"]:
        return f"takes ({', '.join(params)}), expected (header, packet, protocol)"
    missing = {"topic", "payload", "mid", "qos"} - set(_packet.PublishPacket._fields)
    return f"its result lacks {sorted(missing)}" if missing else None


def _check_message_topic(client: aiomqtt.Client) -> str | None:
    return None if getattr(paho_mqtt.MQTTMessage(topic=b"t"), "_topic", None) == b"t" else "not the topic's bytes"


def _check_on_publish(client: aiomqtt.Client) -> str | None:
    callback = getattr(_paho(client), "on_publish", None)
    if not callable(callback):
        return "aiomqtt sets no on_publish callback"
    params = _params(callback)
    return None if len(params) == 5 else f"aiomqtt's callback takes ({', '.join(params)}), expected 5 arguments"


def _check_disconnected(client: aiomqtt.Client) -> str | None:
    return None if isinstance(getattr(client, "_disconnected", None), asyncio.Future) else "not an asyncio.Future"


INTERNALS: tuple[Internal, ...] = (
    Internal("aiomqtt.Client._client", "manual_ack", _check_paho_client),
    Internal("paho.Client.manual_ack_set", "manual_ack", _method("manual_ack_set", ["on"])),
    Internal("paho.Client.ack", "manual_ack", _method("ack", ["mid", "qos"])),
    Internal("aiomqtt.Client._disconnected", "fast", _check_disconnected),
    Internal("aiomqtt.Client._on_publish", "fast", _check_on_publish),
    Internal("paho.Client.publish", "fast", _method("publish", ["topic", "payload", "qos", "retain", "properties"])),
    Internal("paho.Client.loop_read", "fast", _method("loop_read", ["max_packets"])),
    Internal("paho.Client.socket", "fast", _method("socket", [])),
    Internal("paho.Client.disable_logger", "fast", _method("disable_logger", [])),
    Internal("paho.Client._handle_publish", "fast", _method("_handle_publish", [])),
    Internal("paho.Client._packet_handle", "fast", _check_dispatch),
    Internal("paho.Client._in_packet", "fast", _check_in_packet),
    Internal("paho.Client._protocol", "fast", _instance("_protocol", int)),
    Internal("paho.Client._manual_ack", "fast", _instance("_manual_ack", bool)),
    Internal("paho.Client._send_puback", "fast", _method("_send_puback", ["mid"])),
    Internal("paho.Client._sock_recv", "fast", _method("_sock_recv", ["bufsize"])),
    Internal("paho.mqtt._packet.decode_publish", "fast", _check_decode_publish),
    Internal("paho.MQTTMessage._topic", "fast", _check_message_topic),
)


def installed_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in WRITTEN_FOR}


def check(client: aiomqtt.Client, needed_for: str | None = None) -> list[str]:
    """What has changed: one line per internal that is missing or of another shape."""
    problems = []
    for internal in INTERNALS:
        if needed_for is None or internal.needed_for == needed_for:
            try:
                problem = internal.check(client)
            except Exception as exc:  # noqa: BLE001 - a check that cannot run is a changed internal
                problem = f"cannot be checked ({exc!r})"
            if problem is not None:
                problems.append(f"{internal.name}: {problem}")
    return problems


_verdicts: dict[tuple[tuple[str, str], ...], bool] = {}


def fast_path_usable(client: aiomqtt.Client) -> bool:
    """True if the fast path may be used with these library versions (checked on ``client``,
    once per process). Otherwise logs one warning saying why."""
    key = tuple(sorted(WRITTEN_FOR.items()))
    verdict = _verdicts.get(key)
    if verdict is None:
        installed = installed_versions()
        problems = [f"{name} {installed[name]} installed, written for {version}"
                    for name, version in WRITTEN_FOR.items() if installed[name] != version]
        problems += check(client)
        verdict = _verdicts[key] = not problems
        if problems:
            log.warning("mqtt: fast path off, using aiomqtt's public API (slower): %s", "; ".join(problems))
    return verdict


# -- manual acknowledgement (both paths) ------------------------------------------------

def set_manual_ack(client: aiomqtt.Client) -> None:
    """PUBACK only when ack() is called; aiomqtt has no such option, its paho client does."""
    problems = check(client, "manual_ack")
    if problems:
        raise InternalsChanged("manual acknowledgement is not possible: " + "; ".join(problems))
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, mid: int, qos: int) -> bool:
    return client._client.ack(mid, qos) == 0


# -- the fast path ----------------------------------------------------------------------

_fast_clients: "weakref.WeakSet[aiomqtt.Client]" = weakref.WeakSet()


def uses_fast_path(client: aiomqtt.Client) -> bool:
    """True if ``client`` was given the fast path's hooks."""
    return client in _fast_clients


def hook_publish_acks(client: aiomqtt.Client, on_publish: Callable[[int], None]) -> None:
    """Call ``on_publish(mid)`` for each PUBACK, after aiomqtt's own callback. Installed
    before the connection: a persistent session's queued messages arrive with the CONNACK."""
    _fast_clients.add(client)
    paho = client._client
    aiomqtt_on_publish = paho.on_publish

    def on_publish_(c: object, userdata: object, mid: int, reason: object, props: object) -> None:
        aiomqtt_on_publish(c, userdata, mid, reason, props)
        on_publish(mid)

    paho.on_publish = on_publish_


def publish_nowait(client: aiomqtt.Client, topic: str, payload: bytes, qos: int, retain: bool) -> tuple[int, int]:
    """Hand a message to paho without waiting for its PUBACK: (paho's rc, mid)."""
    info = client._client.publish(topic, payload, qos=qos, retain=retain)
    return info.rc, info.mid


def hook_raw_receiver(client: aiomqtt.Client, on_raw: OnRaw, name: str) -> None:
    """Messages straight from paho's read loop to ``on_raw``: no asyncio queue, task or
    aiomqtt Message per message. ``on_raw`` must not block; its failures are logged."""
    paho = client._client
    paho.disable_logger()  # two debug log calls per packet otherwise (aiomqtt enables paho's logger)

    def on_message(c: object, userdata: object, m: Any) -> None:
        try:
            on_raw(m._topic.decode("utf-8", "replace"), m.payload, m.mid, m.qos)
        except Exception:  # never let a handler bug tear down the connection
            log.exception("mqtt %s: message handler failed", name)

    paho.on_message = on_message  # QoS 2, which the lean path below hands back to paho
    paho._handle_publish = _lean_publish_handler(paho, on_raw, name)


def _lean_publish_handler(paho: Any, on_raw: OnRaw, name: str) -> Callable[[], int]:
    """paho's PUBLISH handler without the per-message MQTTMessage (and the lock and
    condition variable each one builds) and callback lookup: QoS 0 and 1 go straight to
    ``on_raw``; QoS 2, which needs paho's PUBREC/PUBREL state, takes paho's own path."""
    paho_handle_publish = paho._handle_publish
    decode_publish = _packet.decode_publish

    def handle_publish() -> int:
        packet = paho._in_packet
        if (packet["command"] & 0x06) == 0x04:  # QoS 2
            return paho_handle_publish()
        result = decode_publish(packet["command"], packet["packet"], paho._protocol)
        try:
            on_raw(result.topic.decode("utf-8", "replace"), result.payload, result.mid, result.qos)
        except Exception:  # never let a handler bug tear down the connection
            log.exception("mqtt %s: message handler failed", name)
        if result.qos == 1 and not paho._manual_ack:
            return paho._send_puback(result.mid)
        return 0

    return handle_publish


def read_in_bursts(client: aiomqtt.Client) -> None:
    """Read up to 256 packets per readable event instead of paho's one.

    paho's loop_read() reads one packet when nothing of its own is in flight, so a
    receiver pays an event-loop turn and an epoll call per message. This keeps reading
    while the socket still has bytes (a zero-timeout select), up to a bound, so that
    other tasks still run. Errors end the session as aiomqtt's own reader does.
    """
    paho = client._client
    sock = paho.socket()
    if sock is None:
        return
    fd = sock.fileno()
    loop = asyncio.get_running_loop()
    aiomqtt_reader_failed = client._disconnected  # aiomqtt's signal that the connection broke
    buffer = RecvBuffer(paho._sock_recv)
    paho._sock_recv = buffer.recv

    def reader() -> None:
        try:
            for _ in range(256):
                paho.loop_read()
                if paho.socket() is None:
                    return
                if not buffer.pending() and not select.select([fd], [], [], 0)[0]:
                    break
            else:
                if buffer.pending():  # whole packets already read: no readable event will come for them
                    loop.call_soon(reader)
        except Exception as exc:  # noqa: BLE001 - any failure ends the session, as aiomqtt's reader does
            if not aiomqtt_reader_failed.done():
                aiomqtt_reader_failed.set_exception(exc)

    loop.remove_reader(fd)  # aiomqtt's reader, which reads one packet per event
    loop.add_reader(fd, reader)
    loop.call_soon(reader)  # whatever arrived with the CONNACK


class RecvBuffer:
    """paho reads a packet in three or more recv calls (the command byte, each byte of the
    remaining length, then the body): a system call each. This reads the socket 64 KiB at
    a time and serves paho's small reads from memory."""

    def __init__(self, sock_recv: Callable[[int], bytes], size: int = 65536) -> None:
        self._sock_recv = sock_recv  # paho's own, which maps TLS want-read to BlockingIOError
        self._size = size
        self._data = b""
        self._pos = 0

    def pending(self) -> bool:
        return self._pos < len(self._data)

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._sock_recv(self._size)  # raises BlockingIOError when there is nothing
            if not data:
                return data  # end of stream
            self._data, self._pos = data, 0
        chunk = self._data[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk
