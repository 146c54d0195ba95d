"""MqttLink through a real Mosquitto that is stopped and started again."""

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from contract.endpoints import MqttEndpoint
from midbrain.broker import BrokerProcess, free_port
from servicekit.mqtt import MqttLink, NotConnected

pytestmark = pytest.mark.real


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
