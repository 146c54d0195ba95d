"""The agent on serial buses from device profiles: DL/T 645 and Modbus simulators on real
pseudo-terminals, readings and commands through a real Mosquitto."""

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.messages import Ack, Command, Event, GatewayHealth, Telemetry
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.profiles import ProfileError, load_bus_file, load_bus_files
from edge.settings import EdgeSettings
from simulators.pty_bus import dlt645_bus, modbus_bus
from tests.conftest import REPO

C = "xihu-demo"


def _profiles(tmp_path: Path, meter_port: str, modbus_port: str) -> list[Path]:
    meters = tmp_path / "meters.toml"
    meters.write_text(f'''
gateway = "gw-b1"
[bus]
protocol = "dlt645"
port = "{meter_port}"
timeout_s = 0.2
gap_ms = 5
[models.m]
class = "electricity_meter"
interval_s = 0.3
max_report_s = 60
offline_after = 2
[[models.m.points]]
name = "energy_kwh"
source = "energy_total"
deadband = 1000   # only the first reading and the max-report interval send it
[[models.m.points]]
name = "voltage_v"
source = "voltage_a"
[[devices]]
id = "b1-em-01"
model = "m"
address = "000000000001"
[[devices]]
id = "b1-em-02"
model = "m"
address = "000000000002"
''')
    plant = tmp_path / "plant.toml"
    plant.write_text(f'''
gateway = "gw-b1"
[bus]
protocol = "modbus"
port = "{modbus_port}"
baudrate = 19200
timeout_s = 0.2
[models.th]
class = "temp_humidity"
interval_s = 0.3
[[models.th.points]]
name = "temperature"
table = "holding"
address = 0
type = "int16"
scale = 0.1
[[models.th.points]]
name = "humidity"
table = "holding"
address = 10
writable = true
[[devices]]
id = "b1-plant-th"
model = "th"
address = "1"
''')
    return [meters, plant]


@pytest.mark.real
async def test_serial_buses_report_by_exception_take_commands_and_notice_a_dead_meter(
        tmp_path: Path, mosquitto: MqttEndpoint, community: Community) -> None:
    with dlt645_bus(2, baudrate=115200) as meters, modbus_bus(1, baudrate=115200) as plant:
        paths = _profiles(tmp_path, meters.port, plant.port)
        buses = [b for _, b in load_bus_files(tuple(str(p) for p in paths))]
        agent = EdgeAgent(community, "gw-b1", mosquitto, EdgeSettings(state_dir=tmp_path / "state",
                                                                      birth_wait_s=0.2, health_interval_s=0.5),
                          buses=buses)
        agent.devices.clear()  # this test is about the serial buses only
        stop = asyncio.Event()
        readings: list[Telemetry] = []
        events: list[Event] = []
        acks: dict[str, Ack] = {}
        acked_at: dict[str, int] = {}  # how many readings had arrived when each ack did
        health: list[GatewayHealth] = []
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub:
            await hub.subscribe(f"mb/v1/{C}/gw-b1/#", qos=1)
            run = asyncio.create_task(agent.run(stop))
            cmd_topic = topics.gateway_command(C, "gw-b1")

            async def collect(until: float) -> None:
                try:
                    async with asyncio.timeout(until):
                        async for m in hub.messages:
                            t = m.topic.value
                            if t.endswith("/telemetry"):
                                readings.append(decode_as(Telemetry, m.payload))  # type: ignore[arg-type]
                            elif t.endswith("/event"):
                                events.append(decode_as(Event, m.payload))  # type: ignore[arg-type]
                            elif t.endswith("/health"):
                                health.append(decode_as(GatewayHealth, m.payload))  # type: ignore[arg-type]
                            elif t.endswith("/ack"):
                                ack = decode_as(Ack, m.payload)  # type: ignore[arg-type]
                                acks[ack.id] = ack
                                acked_at[ack.id] = len(readings)
                except TimeoutError:
                    pass

            await collect(2.0)
            for c in (Command(id="w1", ts=time.time(), command="write", device="b1-plant-th", point="humidity",
                              value=45),
                      Command(id="w2", ts=time.time(), command="write", device="b1-em-01", point="energy_kwh",
                              value=0),
                      Command(id="w3", ts=time.time(), command="write", device="b1-plant-th", point="temperature",
                              value=20),
                      Command(id="i1", ts=time.time(), command="set_interval", device="b1-em-02", value=0.1),
                      Command(id="d1", ts=time.time(), command="disable_point", device="b1-em-02", point="voltage_v"),
                      Command(id="d2", ts=time.time(), command="disable_point", device="b1-em-02", point="colour"),
                      Command(id="r1", ts=time.time(), command="rebirth")):  # every point reported afresh
                await hub.publish(cmd_topic, encode(c), qos=1)
            await collect(1.5)
            meters.devices[0].faults.no_answer = True  # meter 1 stops answering
            await collect(2.5)
            stop.set()
            await asyncio.wait_for(run, 20)

    by_device: dict[str, list[Telemetry]] = {}
    for r in readings:
        by_device.setdefault(r.device, []).append(r)
    assert set(by_device) == {"b1-em-01", "b1-em-02", "b1-plant-th"}
    em2 = by_device["b1-em-02"]
    assert "energy_kwh" in em2[0].metrics and 200 < em2[0].metrics["voltage_v"] < 240
    # Deadband 1000 kWh: energy is sent once, voltage (deadband 0) every time it changes.
    before_rebirth = [r for r in readings[:acked_at["r1"]] if r.device == "b1-em-02"]
    assert sum("energy_kwh" in r.metrics for r in before_rebirth) == 1 and len(em2) > 3
    assert acks["w1"].result == "ok"
    assert any(r.metrics.get("humidity") == 45 for r in by_device["b1-plant-th"])  # written, then read back
    assert acks["w2"].result == "refused" and "not writable" in acks["w2"].reason
    assert acks["w3"].result == "refused" and "not writable" in acks["w3"].reason
    assert acks["i1"].result == "ok"
    assert acks["d1"].result == "ok" and acks["d2"].result == "refused" and "no point 'colour'" in acks["d2"].reason
    after = [r for r in readings[acked_at["r1"]:] if r.device == "b1-em-02"]
    assert after and "energy_kwh" in after[0].metrics  # reported afresh after the rebirth ...
    assert not any("voltage_v" in r.metrics for r in after)  # ... except the point that was disabled
    online = {e.device for e in events if e.event == "device_online"}
    assert online == {"b1-em-01", "b1-em-02", "b1-plant-th"}
    offline = [e for e in events if e.event == "device_offline"]
    assert [e.device for e in offline] == ["b1-em-01"] and offline[0].severity == "warning"
    assert agent.stats()["buses"][meters.port]["errors"]["b1-em-01"] >= 2
    assert health and health[0].devices_online == 3 and health[-1].devices_offline == 1
    assert health[-1].device_errors["b1-em-01"] >= 2 and health[-1].agent_rss_mb > 0


@pytest.mark.unit
def test_every_shipped_device_profile_is_valid() -> None:
    files = load_bus_files(("config/devices/*.toml",), base=REPO)
    assert len(files) >= 3


@pytest.mark.unit
@pytest.mark.parametrize(("edit", "key", "reason"), [
    (('name = "energy_kwh"', 'name = "energy"'), "models.single-phase", "not a metric of electricity_meter"),
    (('source = "voltage_a"', 'source = "voltage_b"'), "-", "dlt645 has no source 'voltage_b'"),
    (('address = "000000000002"', 'address = "12"'), "-", "a DL/T 645 address has 12 digits"),
    (('baudrate = 2400 ', 'baud = 2400 '), "bus.baud", "Extra inputs are not permitted"),
    (('deadband = 1.0', 'deadband = -1.0'), "models.single-phase.points.1.deadband", "greater than or equal to 0"),
])
def test_a_bad_profile_names_file_key_and_reason(tmp_path: Path, edit: tuple[str, str], key: str,
                                                 reason: str) -> None:
    text = (REPO / "config/devices/b1-electricity.toml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ProfileError) as err:
        load_bus_file(bad)
    assert err.value.file == str(bad) and reason in err.value.reason
    if key != "-":
        assert err.value.key.startswith(key)
