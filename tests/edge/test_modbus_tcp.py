"""Modbus TCP end to end: a pymodbus TCP server playing a TCP-to-RTU gateway with three
unit ids → the edge agent → a real Mosquitto → the hub's telemetry store; a unit that
goes silent behind the gateway, a cut TCP link, and the link restored."""

import asyncio
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.messages import Ack, Command, Event, Telemetry
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.profiles import ProfileError, TcpBusSpec, load_bus_file
from edge.settings import EdgeSettings
from simulators.modbus_tcp import modbus_tcp_gateway
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

C, GW = "xihu-demo", "gw-b2"
DEVICES = {"b2-tcp-th-01": 1, "b2-tcp-th-02": 2, "b2-tcp-th-03": 3}  # device id -> unit id


def _profile(host: str, port: int, **bus: object) -> str:
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in bus.items())
    devices = "".join(f'[[devices]]\nid = "{d}"\nmodel = "{"th-set" if unit == 3 else "th"}"\naddress = "{unit}"\n'
                      for d, unit in DEVICES.items())
    return f'''
gateway = "{GW}"
[bus]
protocol = "modbus_tcp"
host = "{host}"
port = {port}
{extra}
[models.th]
class = "temp_humidity"
interval_s = 0.2
report = "every_poll"
offline_after = 2
[[models.th.points]]
name = "temperature"
table = "holding"
address = 0
type = "int16"
scale = 0.1
[[models.th.points]]
name = "humidity"
table = "holding"
address = 1
scale = 0.1

# Unit 3: its humidity point stands in for a writable register (holding 10 of the simulator).
[models.th-set]
class = "temp_humidity"
interval_s = 0.2
report = "every_poll"
offline_after = 2
[[models.th-set.points]]
name = "temperature"
table = "holding"
address = 0
type = "int16"
scale = 0.1
[[models.th-set.points]]
name = "humidity"
table = "holding"
address = 10
writable = true

{devices}'''


# -- the profile -------------------------------------------------------------------------


@pytest.mark.unit
def test_a_modbus_tcp_profile_loads_with_unit_ids_behind_one_host(tmp_path: Path) -> None:
    path = tmp_path / "tcp.toml"
    path.write_text(_profile("10.20.0.5", 502))
    bus = load_bus_file(path)
    assert isinstance(bus.bus, TcpBusSpec) and bus.bus.link == "10.20.0.5:502"
    assert (bus.bus.timeout_s, bus.bus.retries, bus.bus.gap_ms, bus.bus.reopen_s, bus.bus.reopen_max_s) == \
        (1.0, 1, 0.0, 1.0, 30.0)
    assert [d.address for d in bus.devices] == ["1", "2", "3"]
    assert [p.register().address for p in bus.model_of(bus.devices[2]).points] == [0, 10]


@pytest.mark.unit
@pytest.mark.parametrize(("edit", "key", "reason"), [
    (('host = "10.20.0.5"\n', ''), "bus.host", "Field required"),
    (('host = "10.20.0.5"', 'host = ""'), "bus.host", "at least 1 character"),
    (("port = 502", "port = 70000"), "bus.port", "less than or equal to 65535"),
    (("port = 502", 'port = "/dev/ttyUSB0"'), "bus.port", "valid integer"),
    (("port = 502", "port = 502\nbaudrate = 9600"), "bus.baudrate", "Extra inputs are not permitted"),
    (("port = 502", "port = 502\nreopen_s = 5\nreopen_max_s = 2"), "bus", "reopen_max_s (2.0) is less than reopen_s"),
    (('address = "3"', 'address = "248"'), "-", "a Modbus unit id is 1-247, got '248'"),
    (('address = "3"', 'address = "2"'), "-", "address '2' used twice on one bus"),
    (('table = "holding"\naddress = 10\nwritable', 'table = "input"\naddress = 10\nwritable'), "-",
     "only holding registers and coils can be written"),
    (('table = "holding"\naddress = 10\n', ''), "-", "a Modbus point needs table and address"),
    (('protocol = "modbus_tcp"', 'protocol = "modbus_udp"'), "bus", "does not match any of the expected tags"),
])
def test_a_bad_modbus_tcp_profile_names_file_key_and_reason(tmp_path: Path, edit: tuple[str, str], key: str,
                                                            reason: str) -> None:
    text = _profile("10.20.0.5", 502)
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ProfileError) as err:
        load_bus_file(bad)
    assert err.value.file == str(bad) and reason in err.value.reason, err.value.reason
    if key != "-":
        assert err.value.key == key or err.value.key.startswith(key + "."), err.value.key


# -- end to end --------------------------------------------------------------------------


@pytest.fixture
def tcp_community(community: Community) -> Community:
    """The demo community with three Modbus TCP thermometers on gw-b2, so that the hub knows them."""
    doc = community.model_dump(by_alias=True)
    doc["devices"] = [*doc["devices"], *({"id": d, "gateway": GW, "class": "temp_humidity"} for d in DEVICES)]
    return Community.model_validate(doc)


@pytest.mark.real
async def test_a_modbus_tcp_gateway_reaches_the_hub_and_again_after_its_link_is_cut_and_restored(
        tmp_path: Path, tcp_community: Community, mosquitto: MqttEndpoint) -> None:
    sim = modbus_tcp_gateway(3, seed=7)
    await sim.start()
    profile = tmp_path / "tcp.toml"
    profile.write_text(_profile(sim.host, sim.port, timeout_s=0.3, retries=0, reopen_s=0.1, reopen_max_s=0.4))
    bus = load_bus_file(profile)
    agent = EdgeAgent(tcp_community, GW, mosquitto, EdgeSettings(state_dir=tmp_path / "edge", birth_wait_s=0.2),
                      buses=[bus])
    agent.devices.clear()  # gw-b2's MQTT devices are not part of this test
    stop = asyncio.Event()
    telemetry: list[Telemetry] = []
    events: list[Event] = []
    acks: dict[str, Ack] = {}
    try:
        async with serving_hub(tmp_path, tcp_community, mosquitto) as (url, hub), \
                httpx.AsyncClient(base_url=url, headers=api_token(hub, "supervisor")) as http, \
                aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
            await watcher.subscribe(f"mb/v1/{C}/{GW}/#", qos=1)

            async def watch() -> None:
                async for m in watcher.messages:
                    t = m.topic.value
                    if t.endswith("/telemetry"):
                        telemetry.append(decode_as(Telemetry, m.payload))  # type: ignore[arg-type]
                    elif t.endswith("/event"):
                        events.append(decode_as(Event, m.payload))  # type: ignore[arg-type]
                    elif t.endswith("/ack"):
                        ack = decode_as(Ack, m.payload)  # type: ignore[arg-type]
                        acks[ack.id] = ack

            async def stored_since(device: str, since: float) -> list[dict[str, object]]:
                rows = (await http.get("/api/telemetry", params={"device": device, "since": since})).json()
                return rows  # type: ignore[no-any-return]

            async def every_device_stored_since(since: float) -> bool:
                return all([await stored_since(d, since) for d in DEVICES])

            def event_count(device: str, name: str, since: float) -> int:
                """Live events only: those from before the uplink was up came as a backlog."""
                return sum(e.device == device and e.event == name and e.ts >= since for e in events)

            async def command(cmd_id: str, device: str, value: float) -> Ack:
                await watcher.publish(topics.gateway_command(C, GW), encode(Command(
                    id=cmd_id, ts=time.time(), command="write", device=device, point="humidity", value=value)), qos=1)
                return await wait_until(lambda: acks.get(cmd_id), timeout=10)  # type: ignore[no-any-return]

            watching = asyncio.create_task(watch())
            run = asyncio.create_task(agent.run(stop))
            started = time.time()
            try:
                # 1. Every unit id behind the gateway reaches the hub's store; a write goes through.
                await wait_until(lambda: every_device_stored_since(started), timeout=20)
                rows = await stored_since("b2-tcp-th-01", started)
                assert all(15 < r["value"] < 30 for r in rows if r["metric"] == "temperature")  # type: ignore[operator]
                assert (await command("w1", "b2-tcp-th-03", 45)).result == "ok"
                assert sim.units[3].holding[10] == 45
                await wait_until(lambda: any(t.device == "b2-tcp-th-03" and t.metrics.get("humidity") == 45
                                             for t in telemetry))

                # 2. Unit 2 falls silent behind the gateway (exception 0Bh): it alone goes offline.
                sim.units[2].faults.no_answer = True
                silent_at = time.time()
                await wait_until(lambda: event_count("b2-tcp-th-02", "device_offline", silent_at) == 1)
                await wait_until(lambda: {t.device for t in telemetry if t.ts > silent_at + 0.5} >=
                                 {"b2-tcp-th-01", "b2-tcp-th-03"})
                assert not any(t.device == "b2-tcp-th-02" for t in telemetry if t.ts > silent_at + 0.5)
                assert not any(e.event == "device_offline" and e.device != "b2-tcp-th-02" for e in events)
                sim.units[2].faults.no_answer = False
                await wait_until(lambda: event_count("b2-tcp-th-02", "device_online", silent_at) == 1)

                # 3. The TCP link is cut (the server stops, its connections close): every device
                # on the bus goes offline, nothing is reported for them, a write is refused.
                await sim.stop()
                cut_at = time.time()
                await wait_until(lambda: all(event_count(d, "device_offline", cut_at) == 1 for d in DEVICES),
                                 timeout=10)
                offline = [e for e in events if e.event == "device_offline" and e.ts >= cut_at]
                assert {e.device for e in offline} == set(DEVICES)
                assert all(f"{sim.host}:{sim.port}" in str(e.data["reason"]) for e in offline), offline
                refused = await command("w2", "b2-tcp-th-03", 50)
                assert refused.result == "refused" and "device offline" in refused.reason
                await asyncio.sleep(1.0)  # several reconnect attempts, with backoff
                stats = agent.stats()["buses"][f"{sim.host}:{sim.port}"]
                assert stats["port_errors"] >= 3
                assert not [t for t in telemetry if t.ts > cut_at + 0.5]

                # 4. The link is back (same port): readings from every unit id resume, up to the hub,
                # without restarting the agent.
                await sim.start()
                restored_at = time.time()
                await wait_until(lambda: all(event_count(d, "device_online", restored_at) == 1 for d in DEVICES),
                                 timeout=10)
                await wait_until(lambda: every_device_stored_since(restored_at), timeout=10)
                assert (await command("w3", "b2-tcp-th-03", 55)).result == "ok"
                assert sim.units[3].holding[10] == 55
                assert (await http.get("/api/dead-letters")).json() == []  # every message was valid
            finally:
                stop.set()
                await asyncio.wait_for(run, 20)
                watching.cancel()
    finally:
        stop.set()
        await sim.stop()
