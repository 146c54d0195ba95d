"""Store and forward through a real Mosquitto that is stopped and started again."""

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import Backlog, Telemetry
from contract.topics import TopicKind
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from midbrain.broker import BrokerProcess
from midbrain.broker_acl import HUB_USER
from servicekit.tls import mqtt_context
from tests.pki import Pki
from tests.production_broker import ProductionMosquitto

C = "xihu-demo"
RATE = 500  # readings per second while the broker is down


async def _subscriber(endpoint: MqttEndpoint, seen: dict[int, Telemetry], stop: asyncio.Event,
                      bundles: list[int] | None = None) -> None:
    """A persistent-session subscriber that rides out the broker's restart. Live readings come
    one to a message; replayed ones in backlog bundles (sizes appended to ``bundles``)."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client(endpoint.host, endpoint.port, identifier="replay-check", clean_session=False,
                                      username=endpoint.username, password=endpoint.password,
                                      tls_context=mqtt_context(endpoint)) as client:
                await client.subscribe(f"mb/v1/{C}/gw-b2/+/telemetry", qos=1)
                await client.subscribe(topics.gateway_backlog(C, "gw-b2"), qos=1)
                async for m in client.messages:
                    if m.topic.matches(topics.gateway_backlog(C, "gw-b2")):
                        backlog = decode_as(Backlog, m.payload)  # type: ignore[arg-type]
                        if bundles is not None:
                            bundles.append(len(backlog.items))
                        found = [decode_as(Telemetry, json.dumps(i.message).encode()) for i in backlog.items
                                 if topics.parse(i.topic).kind is TopicKind.TELEMETRY]
                    else:
                        found = [decode_as(Telemetry, m.payload)]  # type: ignore[arg-type]
                    for t in found:
                        seen.setdefault(t.seq, t)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)


def _production(tmp_path: Path) -> tuple[ProductionMosquitto, MqttEndpoint, MqttEndpoint]:
    """The shipped conf and ACL: the gateway over TLS with its client certificate and password,
    the subscriber as the hub on the loopback listener."""
    pki = Pki(tmp_path / "pki")
    broker = ProductionMosquitto(tmp_path / "broker", {HUB_USER: "hub-secret", "gw-b2": "b2-secret"}, pki)
    client = pki.client("gw-b2", "gw-b2")
    gateway = MqttEndpoint(host="localhost", port=broker.tls_port, tls=True, ca_file=pki.ca, client_cert=client.cert,
                           client_key=client.key, username="gw-b2", password="b2-secret",
                           reconnect_initial_s=0.05, reconnect_max_s=0.3)
    hub = MqttEndpoint(host=broker.host, port=broker.port, username=HUB_USER, password="hub-secret")
    return broker, gateway, hub


@pytest.mark.real
@pytest.mark.parametrize("config", ["demo", "production"])
async def test_readings_made_during_a_broker_outage_all_arrive_after_it_returns(
        tmp_path: Path, community: Community, config: str) -> None:
    broker: BrokerProcess | ProductionMosquitto
    if config == "production":
        broker, endpoint, sub_endpoint = _production(tmp_path)
    else:
        broker = BrokerProcess.choose("mosquitto", tmp_path / "broker")
        endpoint = sub_endpoint = MqttEndpoint(host=broker.host, port=broker.port, reconnect_initial_s=0.05,
                                               reconnect_max_s=0.3)
    broker.start()
    agent = EdgeAgent(community, "gw-b2", endpoint, EdgeSettings(state_dir=tmp_path / "edge", birth_wait_s=0.1,
                                                                 live_queue=100))
    agent.devices.clear()  # readings come from the loop below
    seen: dict[int, Telemetry] = {}
    stop_sub, stop_agent = asyncio.Event(), asyncio.Event()
    bundles: list[int] = []
    sub = asyncio.create_task(_subscriber(sub_endpoint, seen, stop_sub, bundles))
    run = asyncio.create_task(agent.run(stop_agent))
    produced: list[tuple[int, bool]] = []  # (seq, made while the broker was down)

    async def produce(seconds: float, down: bool) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(RATE // 50):
                agent._publish_reading("b2-th-01", time.time(), {"temperature": 20.0 + len(produced) % 10})
                produced.append((agent._seq, down))
            await asyncio.sleep(0.02)

    try:
        await agent.uplink.wait_connected(10)
        await produce(1.0, down=False)
        broker.stop()
        await produce(3.0, down=True)
        assert agent.spool.depth > 0  # readings went to disk
        broker.start()  # same port, same persistence: the subscriber's session survives
        await produce(2.0, down=False)
        deadline = time.monotonic() + 30
        while len(seen) < len(produced) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop_agent.set()
        await asyncio.wait_for(run, 30)
        stop_sub.set()
        sub.cancel()
        broker.stop()

    missing = [s for s, _ in produced if s not in seen]
    assert not missing, f"{len(missing)} of {len(produced)} readings never arrived (first {missing[:5]})"
    during = [s for s, down in produced if down]
    assert len(during) >= RATE * 2
    assert all(seen[s].hist for s in during)  # replayed from the spool, marked historical
    assert sum(bundles) >= len(during) and max(bundles) > 1  # in backlog bundles, many to a message
    assert agent.counters["replayed"] >= len(during) and agent.spool.depth == 0
    assert agent.spool.counters["dropped_full"] == agent.spool.counters["dropped_age"] == 0


@pytest.mark.real
async def test_what_is_unsent_at_exit_is_spooled_and_sent_by_the_next_run(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    offline = MqttEndpoint(host="127.0.0.1", port=1, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    settings = EdgeSettings(state_dir=tmp_path, birth_wait_s=0.1, flush_timeout_s=0.2)
    first = EdgeAgent(community, "gw-b2", offline, settings)
    first.devices.clear()
    stop = asyncio.Event()
    run = asyncio.create_task(first.run(stop))
    for i in range(300):
        first._publish_reading("b2-th-01", time.time(), {"temperature": 20.0})
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(run, 10)
    assert first.spool.depth == 300

    seen: dict[int, Telemetry] = {}
    stop_sub = asyncio.Event()
    sub = asyncio.create_task(_subscriber(mosquitto, seen, stop_sub))
    await asyncio.sleep(0.3)
    second = EdgeAgent(community, "gw-b2", mosquitto, settings)
    second.devices.clear()
    stop2 = asyncio.Event()
    run2 = asyncio.create_task(second.run(stop2))
    deadline = time.monotonic() + 15
    while len(seen) < 300 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop2.set()
    await asyncio.wait_for(run2, 10)
    stop_sub.set()
    sub.cancel()
    assert sorted(seen) == list(range(1, 301)) and all(t.boot == first.boot and t.hist for t in seen.values())
    assert second.spool.depth == 0
