"""A long-lived MQTT connection (aiomqtt) that reconnects with jittered backoff.

Connection state is something to await (:meth:`MqttLink.wait_connected`), not a flag to
poll. ``on_connect`` runs after every (re)connect, before messages are delivered: that
is where subscriptions and birth messages go.
"""

import asyncio
import logging
import math
import sys
from collections.abc import Awaitable, Callable

import aiomqtt

from contract.endpoints import MqttEndpoint
from servicekit import mqtt_internals
from servicekit.backoff import Backoff
from servicekit.lifecycle import cancel_until_done
from servicekit.tls import mqtt_context

log = logging.getLogger(__name__)

OnConnect = Callable[[aiomqtt.Client], Awaitable[None]]
OnMessage = Callable[[aiomqtt.Message], Awaitable[None]]
OnAck = Callable[[int], None]
OnRaw = mqtt_internals.OnRaw  # topic, payload, mid, qos
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
        self._fast = False  # this session uses servicekit.mqtt_internals (decided per session)
        self._task_mid = 0  # ids of messages published in tasks, off the fast path
        self._publishing: set[asyncio.Task[None]] = set()

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
                await self._session_until_stopped(stop)
                backoff.reset()
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                log.warning("mqtt %s: link to %s:%d down (%s); retry in %.1fs", self.client_id,
                            self.endpoint.host, self.endpoint.port, exc, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _session_until_stopped(self, stop: asyncio.Event) -> None:
        """One session. Once connected, it ends itself on ``stop``; a stop that comes while
        it is still connecting (a broker that takes the TCP connection and never answers, a
        stalled TLS handshake) ends it at once, not after the connect timeout."""
        connects = self.connects  # it moves when the broker has taken the connection
        session = asyncio.create_task(self._session(stop), name=f"{self.client_id}-session")
        stopper = asyncio.create_task(stop.wait(), name=f"{self.client_id}-connect-stop")
        try:
            await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            # Only a session that never connected is cancelled: a connected one may be
            # draining messages it took (see _drain), which must not be cut short.
            if not session.done() and self.connects == connects:
                log.info("mqtt %s: stopped while connecting to %s:%d", self.client_id,
                         self.endpoint.host, self.endpoint.port)
                await cancel_until_done([session])
                return
            await session  # the session's own end (or its MqttError, for run's backoff)
        finally:
            await cancel_until_done([stopper, session])

    async def _session(self, stop: asyncio.Event) -> None:
        ep = self.endpoint
        client = aiomqtt.Client(
            ep.host, ep.port, username=ep.username, password=ep.password, identifier=self.client_id,
            clean_session=self._clean_session, will=self._will, keepalive=ep.keepalive_s, timeout=10,
            max_inflight_messages=self._max_inflight, tls_context=mqtt_context(ep),
        )
        self._fast = mqtt_internals.fast_path_usable(client)
        if self._manual_ack:
            # PUBACK only when the application says the message is safe (see ack()).
            mqtt_internals.set_manual_ack(client)
        # Hooks go in before the connection: a persistent session's queued messages start
        # arriving with the CONNACK, before aiomqtt's connect returns.
        self.session += 1
        self._session_client = client  # acks of this session's messages go here, even mid-connect
        if self._fast:
            mqtt_internals.hook_publish_acks(client, self._published)
            if self._on_raw is not None:
                mqtt_internals.hook_raw_receiver(client, self._on_raw, self.client_id)
        else:
            client.pending_calls_threshold = sys.maxsize  # a pipelining sender has many; no warning each
        try:
            async with client:
                self._client = client
                self.connects += 1
                if self._on_raw is not None and self._fast:
                    mqtt_internals.read_in_bursts(client)
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
                    await cancel_until_done(self._publishing)
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
        if self._manual_ack or (self._on_message is None and self._on_raw is None):
            return
        messages = client.messages  # on the fast path, raw messages never wait here
        while len(messages):
            try:
                message = await anext(messages)  # taken from the queue, even after a disconnection
            except aiomqtt.MqttError:
                log.exception("mqtt %s: %d messages taken before the session ended are lost", self.client_id,
                              len(messages))
                return
            try:
                await self._handle(message)
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
            await self._handle(message)
            if stop.is_set():  # even if the cancellation that should have ended this was lost
                return
        raise aiomqtt.MqttError("message stream ended")

    async def _handle(self, message: aiomqtt.Message) -> None:
        if self._on_raw is not None:  # off the fast path: raw messages come through aiomqtt's queue
            try:
                self._on_raw(message.topic.value, message.payload, message.mid, message.qos)  # type: ignore[arg-type]
            except Exception:  # as on the fast path: a handler bug must not end the session
                log.exception("mqtt %s: message handler failed", self.client_id)
        elif self._on_message is not None:
            await self._on_message(message)

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
    # (the next session is a new paho client that will not resend it). Off the fast path
    # (servicekit.mqtt_internals), each message is a task awaiting aiomqtt's publish().

    def _published(self, mid: int) -> None:
        if mid in self._pipelined:
            self._pipelined.discard(mid)
            if self._on_ack is not None:
                self._on_ack(mid)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Hand a message to the connection without waiting; returns the id ``on_ack`` will name.

        Raises :class:`NotConnected` when there is no session. QoS 0 messages are not acked.
        """
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(topic)
        if not self._fast:
            return self._publish_in_task(client, topic, payload, qos, retain)
        rc, mid = mqtt_internals.publish_nowait(client, topic, payload, qos, retain)
        if rc != 0:
            raise NotConnected(f"{topic}: paho rc {rc}")
        if qos > 0:
            self._pipelined.add(mid)
        return mid

    def _publish_in_task(self, client: aiomqtt.Client, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """publish_nowait on aiomqtt's public API: a task per message, in order (each hands
        its message to the client in its first step), acked when aiomqtt's publish returns."""
        self._task_mid += 1
        mid = self._task_mid
        if qos > 0:
            self._pipelined.add(mid)

        async def publish() -> None:
            try:
                await client.publish(topic, payload, qos=qos, retain=retain, timeout=math.inf)
            except aiomqtt.MqttError as exc:  # the session is ending: on_down tells the sender
                log.debug("mqtt %s: %s not published (%s)", self.client_id, topic, exc)
            else:
                self._published(mid)

        task = asyncio.get_running_loop().create_task(publish(), name=f"{self.client_id}-publish")
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return mid

    def ack(self, session: int, mid: int, qos: int) -> bool:
        """Acknowledge a message received with ``manual_ack``; False if its session is gone
        (the broker will deliver it again, and the receiver's dedup drops the repeat)."""
        client = self._session_client
        if client is None or session != self.session or qos == 0:
            return False
        return mqtt_internals.ack(client, mid, qos)
