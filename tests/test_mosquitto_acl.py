"""The shipped production Mosquitto config: passwords per client, and an ACL that lets
every role publish and receive exactly the topics its code uses, no more.

The topic list is derived from contract/topics.py: every :class:`TopicKind` must have a
row below naming who publishes it, so a new kind without an ACL line fails here (a
broker drops a denied publish silently, with a successful PUBACK, and the edge deletes
spooled records on PUBACK: a missing line loses data without a word).
"""

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.topics import TopicKind
from edge.settings import EdgeSettings
from midbrain.broker_acl import BRIDGE_USER, HUB_USER, render_acl
from midbrain.config import load_config
from tests.conftest import DEMO_CONFIG, REPO
from tests.pki import Pki
from tests.production_broker import SHIPPED_ACL, ProductionMosquitto

pytestmark = pytest.mark.real
USERS = {HUB_USER: "hub-secret", BRIDGE_USER: "bridge-secret", "gw-b1": "b1-secret", "gw-b2": "b2-secret",
         "b1-th-01": "dev-secret"}
C = "xihu-demo"  # the community of config/demo.toml, which the shipped ACL is generated from
GW = "gw-b1"
DEVICE = "b1-th-01"  # a local MQTT device of gw-b1
FIELD = EdgeSettings().device_topic_prefix

# Who publishes each kind of topic (hub/service.py, cloud_bridge/service.py, edge/agent.py).
PUBLISHES: dict[TopicKind, tuple[str, str]] = {
    TopicKind.STATE: (GW, topics.gateway_state(C, GW)),
    TopicKind.COMMAND: (HUB_USER, topics.gateway_command(C, GW)),
    TopicKind.ACK: (GW, topics.gateway_ack(C, GW)),
    TopicKind.HEALTH: (GW, topics.gateway_health(C, GW)),
    TopicKind.BACKLOG: (GW, topics.gateway_backlog(C, GW)),
    TopicKind.TELEMETRY: (GW, topics.device_telemetry(C, GW, DEVICE)),
    TopicKind.EVENT: (GW, topics.device_event(C, GW, DEVICE)),
    TopicKind.SUMMARY: (HUB_USER, topics.hub_summary(C)),
    TopicKind.ALERT: (HUB_USER, topics.hub_alert(C)),
    TopicKind.DOWNLINK_ACK: (HUB_USER, topics.hub_downlink_ack(C)),
    TopicKind.DOWNLINK: (BRIDGE_USER, topics.city_downlink(C)),
}
RAW_READING = (DEVICE, f"{FIELD}/{GW}/{DEVICE}")  # a local device's raw reading, to its gateway
# The filters each role subscribes with, as its code does.
SUBSCRIBES: dict[str, tuple[str, ...]] = {
    HUB_USER: (topics.filter_everything(),),
    BRIDGE_USER: (topics.filter_hub_summaries(C), topics.hub_downlink_ack(C)),
    GW: (topics.filter_gateway_commands(C, GW), f"{FIELD}/{GW}/+"),
}


@pytest.fixture
def production_mosquitto(tmp_path: Path) -> Iterator[int]:
    with ProductionMosquitto(tmp_path / "broker", USERS, Pki(tmp_path / "pki")) as broker:
        yield broker.port


def _client(port: int, user: str, password: str | None = None, role: str = "") -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, username=user, password=password or USERS[user],
                          identifier=f"t-{user}{role}")


async def _collect(client: aiomqtt.Client, into: list[str], quiet_s: float = 1.5) -> None:
    """Gather topics until nothing has arrived for ``quiet_s``."""
    try:
        while True:
            async with asyncio.timeout(quiet_s):
                into.append((await anext(aiter(client.messages))).topic.value)
    except TimeoutError:
        pass


def test_every_topic_kind_has_a_publisher_in_this_table() -> None:
    """A new kind in contract/topics.py fails here until someone says who publishes it
    (and the test below then checks the shipped ACL lets it through)."""
    assert set(PUBLISHES) == set(TopicKind)
    assert all(topics.parse(topic).kind is kind for kind, (_, topic) in PUBLISHES.items())


def test_the_shipped_acl_is_the_one_generated_from_the_demo_config() -> None:
    cfg = load_config(DEMO_CONFIG)
    expected = render_acl(cfg.community, cfg.edge.device_topic_prefix,
                          source=str(DEMO_CONFIG.relative_to(REPO)))
    assert SHIPPED_ACL.read_text() == expected, "regenerate: midbrain config acl config/demo.toml"


async def test_every_role_publishes_and_receives_every_topic_its_code_uses(production_mosquitto: int) -> None:
    port = production_mosquitto
    got: dict[str, list[str]] = {user: [] for user in SUBSCRIBES}
    subscribers = {user: _client(port, user) for user in SUBSCRIBES}
    for user, client in subscribers.items():
        await client.__aenter__()
        for f in SUBSCRIBES[user]:
            await client.subscribe(f, qos=1)
    try:
        sent = [*PUBLISHES.values(), RAW_READING]
        for user in sorted({u for u, _ in sent}):
            async with _client(port, user, role="-pub") as publisher:
                for _, topic in [s for s in sent if s[0] == user]:
                    await publisher.publish(topic, b"{}", qos=1)
        await asyncio.gather(*(_collect(c, got[u]) for u, c in subscribers.items()))
    finally:
        for client in subscribers.values():
            await client.__aexit__(None, None, None)
    for user, filters in SUBSCRIBES.items():
        expected = sorted(t for _, t in sent if any(aiomqtt.Topic(t).matches(f) for f in filters))
        assert sorted(got[user]) == expected, f"{user} missed {sorted(set(expected) - set(got[user]))}"
    assert len(got[HUB_USER]) == len(TopicKind)  # every kind reached the hub: no publish was dropped


async def test_a_gateway_publishes_only_under_its_own_topics_of_its_own_community(production_mosquitto: int) -> None:
    port = production_mosquitto
    allowed = [topics.device_telemetry(C, GW, DEVICE), topics.gateway_state(C, GW), topics.gateway_health(C, GW)]
    denied = [topics.device_telemetry(C, "gw-b2", "b2-th-01"), topics.gateway_state(C, "gw-b2"),
              topics.gateway_command(C, "gw-b2"), topics.hub_summary(C), topics.city_downlink(C),
              # the same gateway id under another community on the same broker
              topics.gateway_state("other-town", GW), topics.device_telemetry("other-town", GW, DEVICE),
              topics.gateway_backlog("other-town", GW)]
    got: list[str] = []
    async with _client(port, HUB_USER) as hub:
        await hub.subscribe(topics.filter_everything(), qos=1)
        async with _client(port, GW) as gw:
            for topic in denied + allowed:
                await gw.publish(topic, b"{}", qos=1)
        await _collect(hub, got)
    assert sorted(got) == sorted(allowed)


async def test_a_gateway_reads_only_its_own_commands(production_mosquitto: int) -> None:
    port = production_mosquitto
    async with _client(port, "gw-b2") as other:
        await other.subscribe(topics.gateway_command(C, GW), qos=1)  # not its own: the ACL withholds it
        await other.subscribe(topics.filter_gateway_commands(C, "gw-b2"), qos=1)
        async with _client(port, HUB_USER) as hub:
            await hub.publish(topics.gateway_command(C, GW), b"{}", qos=1)
            await hub.publish(topics.gateway_command(C, "gw-b2"), b"{}", qos=1)
        got: list[str] = []
        await _collect(other, got)
    assert got == [topics.gateway_command(C, "gw-b2")]


async def test_a_device_publishes_only_its_own_raw_topic_and_its_gateway_reads_it(production_mosquitto: int) -> None:
    port = production_mosquitto
    async with _client(port, "gw-b1") as gw, _client(port, "gw-b2") as other:
        await gw.subscribe(f"{FIELD}/gw-b1/+", qos=1)
        await other.subscribe(f"{FIELD}/gw-b1/+", qos=1)  # not its devices: the ACL withholds them
        await other.subscribe(f"{FIELD}/gw-b2/+", qos=1)  # its own, where this device may not publish
        async with _client(port, "b1-th-01") as device:
            await device.publish(f"{FIELD}/gw-b1/b1-th-01", b"mine", qos=1)
            await device.publish(f"{FIELD}/gw-b1/b1-th-02", b"spoofed", qos=1)
            await device.publish(f"{FIELD}/gw-b2/b1-th-01", b"elsewhere", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(gw.messages))
        assert (message.topic.value, message.payload) == (f"{FIELD}/gw-b1/b1-th-01", b"mine")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):
                await anext(aiter(other.messages))


async def test_a_gateway_s_last_will_reaches_the_hub(production_mosquitto: int) -> None:
    """The broker publishes a gateway's death (its Last Will, on its state topic) under the
    gateway's ACL when the connection drops without a DISCONNECT."""
    port = production_mosquitto
    async with _client(port, HUB_USER) as hub:
        await hub.subscribe(topics.gateway_state(C, GW), qos=1)
        gw = aiomqtt.Client("127.0.0.1", port, username=GW, password=USERS[GW], identifier="t-will",
                            will=aiomqtt.Will(topics.gateway_state(C, GW), b"dead", qos=1))
        await gw.__aenter__()
        gw._client.socket().shutdown(socket.SHUT_RDWR)  # the link breaks: no DISCONNECT is sent
        async with asyncio.timeout(10):
            message = await anext(aiter(hub.messages))
        assert (message.topic.value, message.payload) == (topics.gateway_state(C, GW), b"dead")
        with contextlib.suppress(aiomqtt.MqttError):
            await gw._disconnected  # retrieved, so that asyncio does not report it as never retrieved
        with contextlib.suppress(aiomqtt.MqttError):
            await gw.__aexit__(None, None, None)


async def test_a_wrong_password_is_refused(production_mosquitto: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(production_mosquitto, "gw-b1", password="guess"):
            pass


async def test_anonymous_access_is_refused(production_mosquitto: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", production_mosquitto, identifier="t-anonymous"):
            pass
