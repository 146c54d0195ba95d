"""The shipped production Mosquitto config: passwords per client, each gateway confined to its topics."""

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from midbrain.broker import free_port, mosquitto_path, wait_for_port
from tests.conftest import REPO

pytestmark = pytest.mark.real
USERS = {"midbrain-hub": "hub-secret", "gw-b1": "b1-secret", "gw-b2": "b2-secret", "b1-th-01": "dev-secret"}


@pytest.fixture
def production_mosquitto(tmp_path: Path):  # type: ignore[no-untyped-def]
    passwd_tool = shutil.which("mosquitto_passwd")
    if mosquitto_path() is None or passwd_tool is None:
        pytest.fail("mosquitto and mosquitto_passwd are required: run the README's test command")
    passwd = tmp_path / "midbrain.passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run([passwd_tool, *(["-c"] if i == 0 else []), "-b", str(passwd), user, password], check=True)
    passwd.chmod(0o600)
    port = free_port()
    conf = (REPO / "config" / "mosquitto" / "mosquitto.conf").read_text()
    conf = (conf.replace("/etc/mosquitto/midbrain.passwd", str(passwd))
            .replace("/etc/mosquitto/midbrain.acl", str(REPO / "config" / "mosquitto" / "midbrain.acl"))
            .replace("listener 1883", f"listener {port} 127.0.0.1")
            .replace("persistence true", "persistence false"))
    if os.geteuid() == 0:
        conf += "\n# Started as root by the test: keep root so that the private temp files stay readable.\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([str(mosquitto_path()), "-c", str(tmp_path / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _client(port: int, user: str, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, username=user, password=password or USERS[user], identifier=f"t-{user}")


async def test_a_gateway_publishes_only_under_its_own_topics(production_mosquitto: int) -> None:
    port = production_mosquitto
    allowed = ["mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", "mb/v1/xihu-demo/gw-b1/state"]
    denied = ["mb/v1/xihu-demo/gw-b2/b2-th-01/telemetry", "mb/v1/xihu-demo/gw-b2/state", "mb/v1/xihu-demo/gw-b2/cmd",
              "mb/v1/xihu-demo/_hub/summary"]
    got: list[str] = []
    async with _client(port, "midbrain-hub") as hub:
        await hub.subscribe("mb/#", qos=1)
        async with _client(port, "gw-b1") as gw:
            for topic in denied + allowed:
                await gw.publish(topic, b"{}", qos=1)
        try:
            async with asyncio.timeout(2):
                async for m in hub.messages:
                    got.append(m.topic.value)
        except TimeoutError:
            pass
    assert sorted(got) == sorted(allowed)


async def test_a_device_publishes_only_its_own_raw_topic_and_its_gateway_reads_it(production_mosquitto: int) -> None:
    port = production_mosquitto
    async with _client(port, "gw-b1") as gw, _client(port, "gw-b2") as other:
        await gw.subscribe("field/gw-b1/+", qos=1)
        await other.subscribe("field/gw-b1/+", qos=1)  # not its devices: the ACL withholds them
        async with _client(port, "b1-th-01") as device:
            await device.publish("field/gw-b1/b1-th-01", b"mine", qos=1)
            await device.publish("field/gw-b1/b1-th-02", b"spoofed", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(gw.messages))
        assert (message.topic.value, message.payload) == ("field/gw-b1/b1-th-01", b"mine")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):
                await anext(aiter(other.messages))


async def test_a_wrong_password_is_refused(production_mosquitto: int) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(production_mosquitto, "gw-b1", password="guess"):
            pass
