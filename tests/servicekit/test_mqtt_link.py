"""MqttLink through a real Mosquitto that is stopped and started again, on the fast path
and on aiomqtt's public API (servicekit.mqtt_internals), each test on both."""

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from contract.endpoints import MqttEndpoint
from midbrain.broker import BrokerProcess, free_port
from servicekit import mqtt_internals
from servicekit.mqtt import MqttLink, NotConnected

pytestmark = pytest.mark.real


@pytest.fixture(params=["fast", "public"], autouse=True)
def mqtt_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """"public": the guard is told the fast path was written for other versions."""
    if request.param == "public":
        monkeypatch.setitem(mqtt_internals.WRITTEN_FOR, "paho-mqtt", "0.0.0")
    return request.param


@pytest.mark.parametrize("with_handler", [False, True])
async def test_a_link_reconnects_after_the_broker_restarts(tmp_path: Path, with_handler: bool) -> None:
    port = free_port()
    endpoint = MqttEndpoint(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.3)

    async def ignore(message: aiomqtt.Message) -> None:
        pass

    link = MqttLink(endpoint, client_id="t-link", on_message=ignore if with_handler else None)
    stop = asyncio.Event()
    broker = BrokerProcess("mosquitto", port, tmp_path / "b")
    broker.start()
    runner = asyncio.create_task(link.run(stop))
    try:
        await link.wait_connected(10)
        broker.stop()
        async with asyncio.timeout(10):
            while link.connected:  # the drop is noticed, not hidden
                await asyncio.sleep(0.05)
        with pytest.raises((NotConnected, TimeoutError)):
            await link.publish("t/x", b"1", timeout=0.2)
        broker.start()
        await link.wait_connected(10)
        async with aiomqtt.Client("127.0.0.1", port) as listener:
            await listener.subscribe("t/x", qos=1)
            await link.publish("t/x", b"after", timeout=5)
            async with asyncio.timeout(5):
                assert (await anext(aiter(listener.messages))).payload == b"after"
        assert link.connects == 2
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)
        broker.stop()


async def test_a_raw_receiver_gets_every_queued_message_once_at_each_qos(mosquitto: MqttEndpoint) -> None:
    """The lean receive path (buffered socket reads, no paho MQTTMessage) on a persistent
    session whose queue arrives in one go: 3,000 messages of QoS 1, then nothing more on the
    wire, so the last packets sit in the read buffer with no readable event to come. QoS 0
    and QoS 2 messages go the same way (QoS 2 through paho's own handler)."""
    got: list[tuple[str, bytes, int]] = []

    def on_raw(topic: str, payload: bytes, mid: int, qos: int) -> None:
        got.append((topic, payload, qos))
        link.ack(link.session, mid, qos)  # the broker sends no more than its in-flight window unacked

    link = MqttLink(mosquitto, client_id="t-raw", clean_session=False, manual_ack=True, on_raw=on_raw,
                    on_connect=lambda c: c.subscribe("t/#", qos=2))
    stop = asyncio.Event()
    runner = asyncio.create_task(link.run(stop))
    await link.wait_connected(10)
    stop.set()
    await asyncio.wait_for(runner, 10)  # the session stays with the broker, subscribed

    async with aiomqtt.Client(mosquitto.host, mosquitto.port, max_inflight_messages=1000) as pub:
        for i in range(3000):
            await pub.publish(f"t/{i % 7}", f"m{i}".encode(), qos=1)
    link = MqttLink(mosquitto, client_id="t-raw", clean_session=False, manual_ack=True, on_raw=on_raw)
    stop = asyncio.Event()
    runner = asyncio.create_task(link.run(stop))
    try:
        async with asyncio.timeout(20):
            while len(got) < 3000:
                await asyncio.sleep(0.05)
        assert [p for _, p, _ in got] == [f"m{i}".encode() for i in range(3000)]
        assert {t for t, _, _ in got} == {f"t/{i}" for i in range(7)} and {q for *_, q in got} == {1}
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
            await pub.publish("t/zero", b"q0", qos=0)
            await pub.publish("t/two", b"q2", qos=2)
            async with asyncio.timeout(10):
                while len(got) < 3002:
                    await asyncio.sleep(0.05)
        assert sorted(got[3000:]) == [("t/two", b"q2", 2), ("t/zero", b"q0", 0)]
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)


async def test_a_link_stops_even_if_its_handler_swallows_the_cancellation(mosquitto: MqttEndpoint) -> None:
    """Python 3.11's ``asyncio.wait_for``, which aiomqtt awaits every PUBACK through, drops a
    cancellation that arrives as the PUBACK does; the handler then carries on as if nothing
    happened. Here the handler does the same on purpose: the link must still stop."""
    in_handler, swallowed = asyncio.Event(), asyncio.Event()

    async def stubborn(message: aiomqtt.Message) -> None:
        in_handler.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()  # and not re-raised: what wait_for does when its future is done

    link = MqttLink(mosquitto, client_id="t-stubborn", on_message=stubborn,
                    on_connect=lambda c: c.subscribe("t/#", qos=1))
    stop = asyncio.Event()
    runner = asyncio.create_task(link.run(stop))
    try:
        await link.wait_connected(10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
            await pub.publish("t/x", b"1", qos=1)
        await asyncio.wait_for(in_handler.wait(), 10)
        stop.set()
        await asyncio.wait_for(runner, 10)
        assert swallowed.is_set()
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)


async def test_messages_taken_before_a_stop_are_handled_not_dropped(mosquitto: MqttEndpoint) -> None:
    """Without manual_ack a message is acknowledged to the broker as the client takes it,
    and the broker will not send it again. So what the client holds when the link stops
    (here a stop in the middle of a burst) is handled before the session ends; the rest
    waits in the persistent session for the next one. Every message arrives, in order."""
    got: list[bytes] = []
    stop = asyncio.Event()

    async def handle(message: aiomqtt.Message) -> None:
        got.append(message.payload)  # type: ignore[arg-type]
        if len(got) == 50:
            stop.set()  # while the burst is still arriving

    def link() -> MqttLink:
        return MqttLink(mosquitto, client_id="t-drain", clean_session=False, on_message=handle,
                        on_connect=lambda c: c.subscribe("t/#", qos=1))

    first = link()
    runner = asyncio.create_task(first.run(stop))
    await first.wait_connected(10)
    stop.set()
    await asyncio.wait_for(runner, 10)  # the session stays with the broker, subscribed
    stop.clear()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, max_inflight_messages=1000) as pub:
        for i in range(2000):
            await pub.publish("t/x", f"m{i}".encode(), qos=1)
    runner = asyncio.create_task(link().run(stop))
    await asyncio.wait_for(runner, 20)
    taken_in_the_stopped_session = len(got)
    assert taken_in_the_stopped_session >= 50
    stop.clear()
    runner = asyncio.create_task(link().run(stop))
    try:
        async with asyncio.timeout(20):
            while len(got) < 2000:
                await asyncio.sleep(0.05)
        assert got == [f"m{i}".encode() for i in range(2000)]
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)


async def test_a_stop_while_connecting_ends_the_link_at_once() -> None:
    """A broker address that takes the TCP connection and never answers (a stalled TLS
    handshake or a half-dead broker look the same): a service stopping must not wait out
    the connect timeout (10 s) first."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MqttLink(MqttEndpoint(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.2), client_id="t-silent")
    stop = asyncio.Event()
    runner = asyncio.create_task(link.run(stop))
    try:
        async with asyncio.timeout(5):
            while not accepted:  # the client is now waiting for a CONNACK that never comes
                await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        began = loop.time()
        stop.set()
        await asyncio.wait_for(runner, 8)
        assert loop.time() - began < 2  # not the 10 s connect timeout
        assert link.connects == 0 and not link.connected
    finally:
        runner.cancel()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
