"""The embedded amqtt broker (`midbrain broker`) with midbrain's two corrections."""

import asyncio

import aiomqtt
import pytest

from contract.endpoints import MqttEndpoint

pytestmark = pytest.mark.real


async def test_retained_messages_reach_only_matching_subscriptions(amqtt_broker: MqttEndpoint) -> None:
    host, port = amqtt_broker.host, amqtt_broker.port
    async with aiomqtt.Client(host, port, identifier="holder") as holder:
        await holder.subscribe("mb/#", qos=1)  # another client's broad subscription
        await holder.publish("mb/v1/c/g/state", b"retained", qos=1, retain=True)
        async with aiomqtt.Client(host, port, identifier="other", clean_session=False) as other:
            await other.subscribe("field/g/+", qos=1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    message = await anext(aiter(other.messages))
                    pytest.fail(f"received {message.topic} it never subscribed to")
        async with aiomqtt.Client(host, port, identifier="late") as late:
            await late.subscribe("mb/v1/c/+/state", qos=1)
            async with asyncio.timeout(5):
                assert (await anext(aiter(late.messages))).payload == b"retained"


async def test_a_persistent_session_gets_what_was_published_while_it_was_away(amqtt_broker: MqttEndpoint) -> None:
    host, port = amqtt_broker.host, amqtt_broker.port
    async with aiomqtt.Client(host, port, identifier="hub-like", clean_session=False) as hub:
        await hub.subscribe("mb/v1/c/+/+/telemetry", qos=1)
    await asyncio.sleep(2.0)  # let the broker finish the disconnect, or the publishes race it
    async with aiomqtt.Client(host, port, identifier="edge-like") as edge:
        for i in range(3):
            await edge.publish("mb/v1/c/g/d/telemetry", str(i).encode(), qos=1)
    async with aiomqtt.Client(host, port, identifier="hub-like", clean_session=False) as hub:
        got = []
        async with asyncio.timeout(5):
            async for message in hub.messages:
                got.append(message.payload)
                if len(got) == 3:
                    break
    assert got == [b"0", b"1", b"2"]
