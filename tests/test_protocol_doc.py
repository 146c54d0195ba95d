"""docs/protocol.md's "Try it" commands, run as typed (ports swapped), against a real hub and agent."""

import asyncio
import re
import shlex
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import Ack
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from tests.conftest import REPO, mosquitto_client
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real


def _doc_commands() -> list[str]:
    text = (REPO / "docs" / "protocol.md").read_text()
    section = text.split("## Try it with mosquitto_pub", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_doc_has_the_commands_this_test_relies_on() -> None:
    commands = _doc_commands()
    assert sum(c.startswith("mosquitto_pub") for c in commands) == 4
    assert any(c.startswith("mosquitto_sub") for c in commands)
    assert sum(c.startswith("curl") for c in commands) == 4


async def test_the_documented_commands_do_what_the_doc_says(tmp_path: Path, community: Community,
                                                          mosquitto: MqttEndpoint) -> None:
    agent = EdgeAgent(community, "gw-b1", mosquitto, EdgeSettings(state_dir=tmp_path, birth_wait_s=0.5))
    stop = asyncio.Event()
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
        await watcher.subscribe(topics.gateway_ack("xihu-demo", "gw-b1"), qos=1)
        run = asyncio.create_task(agent.run(stop))
        await agent.uplink.wait_connected(10)
        token = api_token(hub)["Authorization"].removeprefix("Bearer ")  # the doc's $MB_TOKEN
        outputs: list[str] = []
        for command in _doc_commands():
            if command.startswith("mosquitto_sub"):
                continue  # runs until interrupted: nothing to check here
            command = command.replace("-p 1883", f"-p {mosquitto.port}").replace("127.0.0.1:8300", url.split("//")[1])
            command = command.replace("$MB_TOKEN", token)
            argv = shlex.split(command.split(" | ")[0])
            argv[0] = mosquitto_client("mosquitto_pub") if argv[0] == "mosquitto_pub" else argv[0]
            await asyncio.sleep(0.5 if argv[0].endswith("curl") else 0)  # let the hub store what was just sent
            result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=20)
            assert result.returncode == 0, (command, result.stderr)
            outputs.append(result.stdout)
        acks: list[Ack] = []
        async with asyncio.timeout(10):
            async for message in watcher.messages:  # the hub's own rebirth request is answered too
                acks.append(decode_as(Ack, message.payload))  # type: ignore[arg-type]
                if acks[-1].id == "c-1":
                    break
        ack = acks[-1]
        stop.set()
        await asyncio.wait_for(run, 20)
    telemetry, dead, metrics = outputs[1], outputs[3], outputs[4]
    assert '"seq":900001' in telemetry and '"value":21.5' in telemetry
    assert '"reason":"invalid-json"' in dead
    assert 'midbrain_hub_dead_letters_total{reason="invalid-json"} 1.0' in metrics
    assert (ack.id, ack.result) == ("c-1", "ok")
    backlog = outputs[7]
    assert '"seq":900002' in backlog and '"seq":900003' in backlog and '"value":21.3' in backlog
    assert hub.stats()["stored_unannounced"] == 3
    # Readings typed by hand come from an agent run the hub never saw born: it asks the
    # gateway for a rebirth, once (docs/protocol.md says so), and the agent answers it.
    assert [a.id.split("-")[0] for a in acks] in (["c"], ["rebirth", "c"])
    assert hub.registry.gateways["gw-b1"].rebirth_asked["reason"] == "no-birth"  # type: ignore[index]
