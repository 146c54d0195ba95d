"""A long-lived MQTT connection (aiomqtt) that reconnects with jittered backoff.

Connection state is something to await (:meth:`MqttLink.wait_connected`), not a flag to
poll. ``on_connect`` runs after every (re)connect, before messages are delivered: that
is where subscriptions and birth messages go.
"""

import asyncio
import logging
import select
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from paho.mqtt import _packet

from contract.endpoints import MqttEndpoint
from servicekit.backoff import Backoff
from servicekit.lifecycle import cancel_until_done
from servicekit.tls import mqtt_context

log = logging.getLogger(__name__)

OnConnect = Callable[[aiomqtt.Client], Awaitable[None]]
OnMessage = Callable[[aiomqtt.Message], Awaitable[None]]
OnAck = Callable[[int], None]
OnRaw = Callable[[str, bytes, int, int], None]  # topic, payload, mid, qos
OnDown = Callable[[], None]


class NotConnected(Exception):
    """Publishing failed because the link is down; the caller keeps the message."""


class MqttLink:
    def __init__(self, endpoint: MqttEndpoint, *, client_id: str, clean_session: bool = True,
                 will: aiomqtt.Will | None = None, on_connect: OnConnect | None = None,
                 on_message: OnMessage | None = None, max_inflight: int = 100,
                 on_ack: OnAck | None = None, on_down: OnDown | None = None, manual_ack: bool = False,
                 on_raw: OnRaw | None = None) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self._clean_session = clean_session
        self._will = will
        self._on_connect = on_connect
        self._on_message = on_message
        self._max_inflight = max_inflight
        self._client: aiomqtt.Client | None = None
        self._on_ack = on_ack
        self._on_down = on_down
        self._pipelined: set[int] = set()
        self._manual_ack = manual_ack
        self._on_raw = on_raw
        self.session = 0  # increases with every (re)connect; a message can only be acked in its own session
        self._session_client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set."""
        backoff = Backoff(self.endpoint.reconnect_initial_s, self.endpoint.reconnect_max_s)
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff.reset()
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                log.warning("mqtt %s: link to %s:%d down (%s); retry in %.1fs", self.client_id,
                            self.endpoint.host, self.endpoint.port, exc, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _session(self, stop: asyncio.Event) -> None:
        ep = self.endpoint
        client = aiomqtt.Client(
            ep.host, ep.port, username=ep.username, password=ep.password, identifier=self.client_id,
            clean_session=self._clean_session, will=self._will, keepalive=ep.keepalive_s, timeout=10,
            max_inflight_messages=self._max_inflight, tls_context=mqtt_context(ep),
        )
        if self._manual_ack:
            # PUBACK only when the application says the message is safe (see ack()); aiomqtt
            # has no such option, its paho client does.
            client._client.manual_ack_set(True)
        # Hooks go in before the connection: a persistent session's queued messages start
        # arriving with the CONNACK, before aiomqtt's connect returns.
        self.session += 1
        self._session_client = client  # acks of this session's messages go here, even mid-connect
        self._hook_paho(client)
        try:
            async with client:
                self._client = client
                self.connects += 1
                if self._on_raw is not None:
                    self._read_in_bursts(client)
                try:
                    if self._on_connect is not None:
                        await self._on_connect(client)
                    self._connected.set()
                    log.info("mqtt %s: connected to %s:%d", self.client_id, ep.host, ep.port)
                    await self._serve(client, stop)
                finally:
                    was_up = self._connected.is_set()
                    self._connected.clear()
                    self._client = None
                    self._pipelined.clear()
                    if was_up and self._on_down is not None:
                        self._on_down()
        finally:
            await self._drain(client)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Messages the client took, and acknowledged to the broker on receipt (no
        manual_ack), that the reader had not handled when the session ended (a stop, a
        dropped connection): handled now. The broker will not send them again, so dropping
        them would lose them. With manual_ack an unhandled message is not acknowledged, and
        comes again."""
        if self._on_message is None or self._manual_ack:
            return
        queue = client._queue  # aiomqtt's incoming queue; it has no public way to empty it
        while not queue.empty():
            message = queue.get_nowait()
            try:
                await self._on_message(message)
            except Exception:  # noqa: BLE001 - one bad message must not cost the ones after it
                log.exception("mqtt %s: a message taken before the session ended could not be handled",
                              self.client_id)

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait(), name=f"{self.client_id}-stop")
        # The message stream is read even by a publish-only link: it is what raises when the
        # connection drops, so that the link reconnects instead of staying "connected" forever.
        reader = asyncio.create_task(self._read(client, stop), name=f"{self.client_id}-read")
        tasks = {stopper, reader}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise MqttError from the reader
        finally:
            await cancel_until_done(tasks)

    async def _read(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async for message in client.messages:
            if self._on_message is not None:
                await self._on_message(message)
            if stop.is_set():  # even if the cancellation that should have ended this was lost
                return
        raise aiomqtt.MqttError("message stream ended")

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      timeout: float | None = None) -> None:
        """Publish once connected; raise :class:`NotConnected` if the link drops meanwhile."""
        await self.wait_connected(timeout)
        client = self._client
        if client is None:
            raise NotConnected(topic)
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise NotConnected(f"{topic}: {exc}") from exc

    # -- pipelined publishing ----------------------------------------------------------
    #
    # aiomqtt's publish() awaits each PUBACK, which caps one sender at a few thousand QoS 1
    # messages/s. A high-rate sender instead keeps a window of messages in flight: it hands
    # them to the paho client underneath aiomqtt (which aiomqtt drives from this event
    # loop) and hears about each PUBACK through ``on_ack``. When a session ends, ``on_down``
    # fires and every pipelined message without an ack must be treated as not delivered
    # (the next session is a new paho client that will not resend it).

    def _hook_paho(self, client: aiomqtt.Client) -> None:
        paho = client._client  # aiomqtt's paho client; aiomqtt has no public pipelined publish
        aiomqtt_on_publish = paho.on_publish

        def on_publish(c: object, userdata: object, mid: int, reason: object, props: object) -> None:
            aiomqtt_on_publish(c, userdata, mid, reason, props)
            if mid in self._pipelined:
                self._pipelined.discard(mid)
                if self._on_ack is not None:
                    self._on_ack(mid)

        paho.on_publish = on_publish
        if self._on_raw is not None:
            paho.disable_logger()  # two debug log calls per packet otherwise (aiomqtt enables paho's logger)
            # High-rate receivers take messages straight from paho's read loop: no asyncio
            # queue, task or aiomqtt Message per message. The handler must not block.
            on_raw = self._on_raw

            def on_message(c: object, userdata: object, m: object) -> None:
                try:
                    on_raw(m._topic.decode("utf-8", "replace"), m.payload, m.mid, m.qos)  # type: ignore[attr-defined]
                except Exception:  # never let a handler bug tear down the connection
                    log.exception("mqtt %s: message handler failed", self.client_id)

            paho.on_message = on_message  # QoS 2, which the lean path below hands back to paho
            paho._handle_publish = self._lean_publish_handler(paho, on_raw)

    def _lean_publish_handler(self, paho: Any, on_raw: OnRaw) -> Callable[[], int]:
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
                log.exception("mqtt %s: message handler failed", self.client_id)
            if result.qos == 1 and not paho._manual_ack:
                return paho._send_puback(result.mid)
            return 0

        return handle_publish

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Hand a message to the connection without waiting; returns the id ``on_ack`` will name.

        Raises :class:`NotConnected` when there is no session. QoS 0 messages are not acked.
        """
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(topic)
        info = client._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise NotConnected(f"{topic}: paho rc {info.rc}")
        if qos > 0:
            self._pipelined.add(info.mid)
        return info.mid

    def ack(self, session: int, mid: int, qos: int) -> bool:
        """Acknowledge a message received with ``manual_ack``; False if its session is gone
        (the broker will deliver it again, and the receiver's dedup drops the repeat)."""
        client = self._session_client
        if client is None or session != self.session or qos == 0:
            return False
        return client._client.ack(mid, qos) == 0

    def _read_in_bursts(self, client: aiomqtt.Client) -> None:
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
        buffer = _RecvBuffer(paho._sock_recv)
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

        loop.remove_reader(fd)
        loop.add_reader(fd, reader)
        loop.call_soon(reader)  # whatever arrived with the CONNACK


class _RecvBuffer:
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
