"""The edge agent through real paths: Mosquitto, a PMS5003 on a pseudo-terminal, subprocesses."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode, decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.messages import Ack, Birth, Command, Death, Telemetry
from contract.topics import TopicKind
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from edge.spool import Spool
from simulators.pty_pms5003 import PtyPms5003
from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.real
C = "xihu-demo"


async def _collect(client: aiomqtt.Client, n: int, timeout: float = 15.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for m in client.messages:
            got.append(m)
            if len(got) >= n:
                return got
    return got


async def test_readings_from_mqtt_and_serial_devices_reach_the_contract_topics(
        tmp_path: Path, community: Community, any_broker: MqttEndpoint) -> None:
    settings = EdgeSettings(state_dir=tmp_path)
    with PtyPms5003(seed=5) as sensor:
        agent = EdgeAgent(community, "gw-b1", any_broker, settings, serial_ports={"b1-aq-01": sensor.port})
        stop = asyncio.Event()
        async with aiomqtt.Client(any_broker.host, any_broker.port) as hub_side, \
                aiomqtt.Client(any_broker.host, any_broker.port) as device:
            await hub_side.subscribe(topics.filter_community(C), qos=1)
            run = asyncio.create_task(agent.run(stop))
            birth_msg = (await _collect(hub_side, 1))[0]
            birth = decode(TopicKind.STATE, birth_msg.payload)  # type: ignore[arg-type]
            assert isinstance(birth, Birth) and birth_msg.topic.value == topics.gateway_state(C, "gw-b1")
            assert {d.id for d in birth.devices} == {d.id for d in community.devices_of("gw-b1")}

            await device.publish("field/gw-b1/b1-th-01", b'{"ts": 1764230000.0, "values": {"temperature": 22.5}}', qos=1)
            await device.publish("field/gw-b1/b1-th-01", b'{"values": {"colour": 1}}', qos=1)  # refused at the edge
            got = await _collect(hub_side, 3)
            stop.set()
            await asyncio.wait_for(run, 20)

    by_device = {}
    for m in got:
        parsed = topics.parse(m.topic.value)
        if parsed.kind is TopicKind.TELEMETRY:
            by_device.setdefault(parsed.device, []).append(decode_as(Telemetry, m.payload))  # type: ignore[arg-type]
    assert by_device["b1-th-01"][0].metrics == {"temperature": 22.5}
    assert by_device["b1-th-01"][0].ts == 1764230000.0
    aq = by_device["b1-aq-01"][0]
    assert set(aq.metrics) == {"pm1_0", "pm2_5", "pm10"} and aq.boot == birth.boot
    seqs = [t.seq for ts in by_device.values() for t in ts]
    assert len(set(seqs)) == len(seqs) and birth.seq not in seqs  # unique within the run
    # The refused reading is counted and kept where a person can read it.
    assert agent.counters["rejected"] == 1
    letter = json.loads((tmp_path / "gw-b1-dead-letters.jsonl").read_text().splitlines()[0])
    assert letter["reason"] == "unknown-metric" and letter["source"] == "field/gw-b1/b1-th-01"


async def test_a_device_reading_handed_over_twice_by_the_local_broker_is_forwarded_once(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    """QoS 1 from a device is at-least-once; a copy must not get a second seq (the hub could not dedup it)."""
    agent = EdgeAgent(community, "gw-b1", mosquitto, EdgeSettings(state_dir=tmp_path))
    stop = asyncio.Event()
    reading = b'{"ts": 1764230000.0, "values": {"temperature": 22.5}}'
    untimed = b'{"values": {"temperature": 23.0}}'  # no device time: two of these are two readings
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub_side, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        await hub_side.subscribe(topics.gateway_state(C, "gw-b1"), qos=1)
        await hub_side.subscribe(topics.device_telemetry(C, "gw-b1", "b1-th-01"), qos=1)
        run = asyncio.create_task(agent.run(stop))
        await _collect(hub_side, 1)  # the birth: the agent is subscribed to its devices
        for payload in (reading, reading, b'{"ts": 1764230001.0, "values": {"temperature": 22.5}}',
                        untimed, untimed):
            await device.publish("field/gw-b1/b1-th-01", payload, qos=1)
        got = [decode_as(Telemetry, m.payload) for m in await _collect(hub_side, 4)]  # type: ignore[arg-type]
        with pytest.raises(TimeoutError):  # and nothing more
            await _collect(hub_side, 1, timeout=1.0)
        stop.set()
        await asyncio.wait_for(run, 20)
    assert [t.ts for t in got[:2]] == [1764230000.0, 1764230001.0]
    assert [t.metrics["temperature"] for t in got[2:]] == [23.0, 23.0]
    assert agent.counters["local_redelivered"] == 1


async def test_commands_are_acknowledged_with_a_result_or_a_reason(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    agent = EdgeAgent(community, "gw-b2", mosquitto, EdgeSettings(state_dir=tmp_path))
    stop = asyncio.Event()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub_side:
        await hub_side.subscribe(topics.gateway_ack(C, "gw-b2"), qos=1)
        await hub_side.subscribe(topics.gateway_state(C, "gw-b2"), qos=1)
        run = asyncio.create_task(agent.run(stop))
        await agent.uplink.wait_connected(10)
        await asyncio.sleep(0.2)
        cmd = topics.gateway_command(C, "gw-b2")
        for c in (Command(id="c1", ts=time.time(), command="ping"),
                  Command(id="c2", ts=time.time(), command="read_now", device="b2-th-01"),
                  Command(id="c3", ts=time.time(), command="ping", device="nope-1"),
                  Command(id="c4", ts=time.time(), command="rebirth")):
            await hub_side.publish(cmd, encode(c), qos=1)
        await hub_side.publish(cmd, b'{"v":1,"command":"format-disk"}', qos=1)
        acks: dict[str, Ack] = {}
        births = 0
        async with asyncio.timeout(10):
            async for m in hub_side.messages:
                if m.topic.value.endswith("/ack"):
                    ack = decode_as(Ack, m.payload)  # type: ignore[arg-type]
                    acks[ack.id] = ack
                elif isinstance(decode(TopicKind.STATE, m.payload), Birth):  # type: ignore[arg-type]
                    births += 1
                if len(acks) == 4 and births >= 2:
                    break
        stop.set()
        await asyncio.wait_for(run, 20)
    assert acks["c1"].result == "ok"
    assert acks["c2"].result == "refused" and "reports by itself" in acks["c2"].reason
    assert acks["c3"].result == "refused" and "unknown device 'nope-1'" in acks["c3"].reason
    assert acks["c4"].result == "ok" and births >= 2  # the rebirth
    assert agent.counters["rejected"] == 1  # the malformed command, dead-lettered at the edge


def _edge_process(mqtt: MqttEndpoint, tmp_path: Path, gateway: str) -> subprocess.Popen[bytes]:
    """``midbrain edge`` as a gateway runs it: its own config file, no environment overrides."""
    community = DEMO_CONFIG.read_text().split("\n[mqtt]")[0]
    config = tmp_path / "gateway.toml"
    config.write_text(f'{community}\n[mqtt]\nhost = "{mqtt.host}"\nport = {mqtt.port}\n\n'
                      f'[edge]\nstate_dir = "{tmp_path}"\nbirth_wait_s = 1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
    return subprocess.Popen([sys.executable, "-m", "midbrain", "edge", "--gateway", gateway,
                             "--config", str(config), "--stats-file", str(tmp_path / "stats.json")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _state(client: aiomqtt.Client) -> Birth | Death:
    async with asyncio.timeout(30):
        async for m in client.messages:
            return decode(TopicKind.STATE, m.payload)  # type: ignore[arg-type, return-value]
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("sig", "clean"), [(signal.SIGKILL, False), (signal.SIGTERM, True)])
async def test_death_is_the_last_will_or_a_clean_goodbye(tmp_path: Path, mosquitto: MqttEndpoint,
                                                        sig: signal.Signals, clean: bool) -> None:
    proc = _edge_process(mosquitto, tmp_path, "gw-kiosk")
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
            await watcher.subscribe(topics.gateway_state(C, "gw-kiosk"), qos=1)
            birth = await _state(watcher)
            assert isinstance(birth, Birth)
            proc.send_signal(sig)
            death = await _state(watcher)
        assert isinstance(death, Death) and death.boot == birth.boot and death.clean is clean
        assert proc.wait(20) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
        # Retained: a hub that starts later still learns the gateway is offline.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
            await late.subscribe(topics.gateway_state(C, "gw-kiosk"), qos=1)
            assert isinstance(await _state(late), Death)
        if clean:
            assert json.loads((tmp_path / "stats.json").read_text())["boot"] == birth.boot
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_the_running_agent_maps_no_library_it_does_not_use(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    """A gateway's budget is 40 MB (docs/edge.md): cryptography's bundled OpenSSL (6 MB, for
    downlink signatures, which only the hub and bridge check) and the hub's sqlite3 stay out."""
    proc = _edge_process(mosquitto, tmp_path, "gw-kiosk")
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
            await watcher.subscribe(topics.gateway_state(C, "gw-kiosk"), qos=1)
            assert isinstance(await _state(watcher), Birth)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "site-packages/cryptography" not in maps and "_sqlite3" not in maps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_a_link_readings_go_to_the_disk_spool_marked_historical(tmp_path: Path,
                                                                         community: Community) -> None:
    async def scenario() -> EdgeAgent:
        agent = EdgeAgent(community, "gw-b2", MqttEndpoint(port=1), EdgeSettings(state_dir=tmp_path))
        for i in range(25):
            agent.enqueue(f"t/{i}", Telemetry(seq=i, boot="b", ts=1.0, device="b2-th-01", metrics={"temperature": i}))
        agent.spool.close()
        return agent

    agent = asyncio.run(scenario())
    assert agent.counters["spooled"] == 25 and not agent._live
    spool = Spool(tmp_path / "gw-b2-spool")
    records = spool.read(100)
    assert [r.topic for r in records] == [f"t/{i}" for i in range(25)]
    assert all(decode_as(Telemetry, r.payload).hist for r in records)
