"""The guard around the fast MQTT path (servicekit.mqtt_internals): every private aiomqtt and
paho-mqtt internal it relies on is still there with the shape relied on (a failure here
names the one an upgrade changed), the fast path is in use on the locked versions, and
the public-API fallback publishes, receives and acknowledges by hand through a real
Mosquitto."""

import asyncio
import logging

import aiomqtt
import pytest

from contract.endpoints import MqttEndpoint
from servicekit import mqtt_internals
from servicekit.mqtt import MqttLink

# Every internal relied on: a new one must be added here and to INTERNALS, with its check.
RELIED_ON = {
    "aiomqtt.Client._client", "aiomqtt.Client._disconnected", "aiomqtt.Client._on_publish",
    "paho.Client.manual_ack_set", "paho.Client.ack", "paho.Client.publish", "paho.Client.loop_read",
    "paho.Client.socket", "paho.Client.disable_logger", "paho.Client._handle_publish", "paho.Client._packet_handle",
    "paho.Client._in_packet", "paho.Client._protocol", "paho.Client._manual_ack", "paho.Client._send_puback",
    "paho.Client._sock_recv", "paho.mqtt._packet.decode_publish", "paho.MQTTMessage._topic",
}


@pytest.mark.unit
def test_the_guard_lists_every_internal_relied_on() -> None:
    assert {i.name for i in mqtt_internals.INTERNALS} == RELIED_ON


@pytest.mark.unit
@pytest.mark.parametrize("internal", mqtt_internals.INTERNALS, ids=lambda i: i.name)
async def test_an_internal_relied_on_is_there_with_the_expected_shape(internal: mqtt_internals.Internal) -> None:
    client = aiomqtt.Client("127.0.0.1", 1)  # no I/O until entered
    problem = internal.check(client)
    assert problem is None, f"{internal.name} changed: {problem} (servicekit/mqtt_internals.py relies on it)"


@pytest.mark.unit
async def test_the_checks_name_what_changed() -> None:
    """The checks can fail: an attribute removed, a method of another signature, another object."""
    client = aiomqtt.Client("127.0.0.1", 1)
    del client._client._in_packet
    client._client._send_puback = lambda mid, reason: 0  # type: ignore[method-assign]
    problems = mqtt_internals.check(client)
    assert [p.split(":")[0] for p in problems] == ["paho.Client._in_packet", "paho.Client._send_puback"]
    assert "takes (mid, reason), expected (mid)" in problems[1]
    client._client = object()  # type: ignore[assignment]
    with pytest.raises(mqtt_internals.InternalsChanged, match="aiomqtt.Client._client"):
        mqtt_internals.set_manual_ack(client)


@pytest.mark.unit
async def test_the_guard_passes_on_the_locked_versions() -> None:
    assert mqtt_internals.installed_versions() == mqtt_internals.WRITTEN_FOR
    assert mqtt_internals.check(aiomqtt.Client("127.0.0.1", 1)) == []
    assert mqtt_internals.fast_path_usable(aiomqtt.Client("127.0.0.1", 1))


@pytest.mark.unit
async def test_other_versions_turn_the_fast_path_off_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(mqtt_internals.WRITTEN_FOR, "aiomqtt", "2.4.0")
    with caplog.at_level(logging.WARNING, logger="servicekit.mqtt_internals"):
        assert not mqtt_internals.fast_path_usable(aiomqtt.Client("127.0.0.1", 1))
        assert not mqtt_internals.fast_path_usable(aiomqtt.Client("127.0.0.1", 1))
    assert [r.getMessage() for r in caplog.records] == [
        "mqtt: fast path off, using aiomqtt's public API (slower): aiomqtt 2.5.1 installed, written for 2.4.0"]


async def _run(link: MqttLink) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    runner = asyncio.create_task(link.run(stop))
    await link.wait_connected(10)
    return stop, runner


async def _stop(stop: asyncio.Event, runner: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(runner, 10)


@pytest.mark.real
@pytest.mark.parametrize("path", ["fast", "public"])
async def test_both_paths_publish_receive_and_acknowledge_by_hand(mosquitto: MqttEndpoint, path: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a real Mosquitto: a pipelined sender (publish_nowait, on_ack) and a raw
    receiver with manual_ack on a persistent session. What the receiver acknowledged is not
    delivered again on its next session; what it did not acknowledge is."""
    if path == "public":
        monkeypatch.setitem(mqtt_internals.WRITTEN_FOR, "paho-mqtt", "0.0.0")
    clients: list[aiomqtt.Client] = []
    got: list[tuple[bytes, int, int]] = []  # payload, mid, qos

    async def subscribe(client: aiomqtt.Client) -> None:
        clients.append(client)
        await client.subscribe("seam/#", qos=1)

    def receiver() -> MqttLink:
        return MqttLink(mosquitto, client_id=f"t-seam-rx-{path}", clean_session=False, manual_ack=True,
                        on_connect=subscribe, on_raw=lambda topic, payload, mid, qos: got.append((payload, mid, qos)))

    acked: list[int] = []
    sender = MqttLink(mosquitto, client_id=f"t-seam-tx-{path}", on_ack=acked.append,
                      on_connect=lambda c: clients.append(c) or asyncio.sleep(0))
    rx = receiver()
    rx_stop, rx_runner = await _run(rx)
    tx_stop, tx_runner = await _run(sender)
    try:
        assert [mqtt_internals.uses_fast_path(c) for c in clients] == [path == "fast"] * 2
        mids = [sender.publish_nowait("seam/x", f"m{i}".encode(), qos=1) for i in range(500)]
        async with asyncio.timeout(10):
            while len(acked) < 500 or len(got) < 500:
                await asyncio.sleep(0.02)
        assert sorted(acked) == sorted(mids)
        assert [p for p, _, _ in got] == [f"m{i}".encode() for i in range(500)]
        for _, mid, qos in got[:300]:  # the first 300 are safe; the last 200 are not acknowledged
            assert rx.ack(rx.session, mid, qos)
        await asyncio.sleep(0.2)  # the PUBACKs reach the broker
    finally:
        await _stop(tx_stop, tx_runner)
        await _stop(rx_stop, rx_runner)
    got.clear()
    rx = receiver()
    rx_stop, rx_runner = await _run(rx)
    try:
        async with asyncio.timeout(10):
            while len(got) < 200:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # and nothing more comes
        assert [p for p, _, _ in got] == [f"m{i}".encode() for i in range(300, 500)]
        assert mqtt_internals.uses_fast_path(clients[-1]) is (path == "fast")
    finally:
        await _stop(rx_stop, rx_runner)
