"""MqttLink over TLS to the shipped production Mosquitto (its 8883 listener, which
requires a client certificate from the community CA), with certificates from a test CA.

The broker's certificate names only ``localhost``, so connecting to 127.0.0.1 is a
connection to the wrong host name.
"""

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from pydantic import ValidationError

from contract import topics
from contract.endpoints import MqttEndpoint
from midbrain.broker_acl import HUB_USER
from servicekit.mqtt import MqttLink
from tests.conftest import wait_until
from tests.pki import Pki
from tests.production_broker import ProductionMosquitto

C, GW = "xihu-demo", "gw-b1"
USERS = {HUB_USER: "hub-secret", GW: "b1-secret"}


@dataclass
class Tls:
    broker: ProductionMosquitto
    pki: Pki
    other: Pki  # a CA the broker does not trust

    def endpoint(self, user: str = GW, **changes: object) -> MqttEndpoint:
        client = self.pki.client(f"client-{user}", user)
        fields: dict[str, object] = dict(host="localhost", port=self.broker.tls_port, tls=True, ca_file=self.pki.ca,
                                         client_cert=client.cert, client_key=client.key, username=user,
                                         password=USERS[user], reconnect_initial_s=0.05, reconnect_max_s=0.3)
        return MqttEndpoint(**{**fields, **changes})


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[Tls]:
    pki = Pki(tmp_path / "pki")
    with ProductionMosquitto(tmp_path / "broker", USERS, pki) as broker:
        yield Tls(broker, pki, Pki(tmp_path / "other", name="some other CA"))


async def _run(link: MqttLink) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(link.run(stop))


@pytest.mark.real
async def test_a_link_exchanges_messages_over_verified_tls(tls: Tls) -> None:
    """A gateway's link publishes over TLS and receives its commands; the hub's lean raw
    receiver (buffered reads under paho) gets a burst of 2,000 over TLS too."""
    commands: list[bytes] = []
    raw: list[bytes] = []

    async def on_command(message: aiomqtt.Message) -> None:
        commands.append(message.payload)  # type: ignore[arg-type]

    gateway = MqttLink(tls.endpoint(GW), client_id="t-gw", on_message=on_command,
                       on_connect=lambda c: c.subscribe(topics.gateway_command(C, GW), qos=1))
    hub = MqttLink(tls.endpoint(HUB_USER), client_id="t-hub", on_raw=lambda t, p, mid, q: raw.append(p),
                   on_connect=lambda c: c.subscribe(topics.filter_everything(), qos=1))
    stops = [await _run(gateway), await _run(hub)]
    try:
        await gateway.wait_connected(10)
        await hub.wait_connected(10)
        for i in range(2000):
            await gateway.publish(topics.gateway_health(C, GW), f"h{i}".encode(), qos=1, timeout=5)
        await hub.publish(topics.gateway_command(C, GW), b"rebirth", qos=1, timeout=5)
        async with asyncio.timeout(20):
            while len(raw) < 2001 or not commands:
                await asyncio.sleep(0.05)
        assert raw[:2000] == [f"h{i}".encode() for i in range(2000)] and commands == [b"rebirth"]
    finally:
        for stop, task in stops:
            stop.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.real
@pytest.mark.parametrize("case", ["no client certificate", "client certificate from another CA",
                                  "trusting another CA", "wrong host name", "plain MQTT on the TLS port"])
async def test_a_link_that_cannot_be_verified_is_refused(tls: Tls, case: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    if case == "no client certificate":
        endpoint = tls.endpoint(client_cert=None, client_key=None)
    elif case == "client certificate from another CA":
        foreign = tls.other.client("foreign", GW)
        endpoint = tls.endpoint(client_cert=foreign.cert, client_key=foreign.key)
    elif case == "trusting another CA":
        endpoint = tls.endpoint(ca_file=tls.other.ca)
    elif case == "wrong host name":
        endpoint = tls.endpoint(host="127.0.0.1")  # the broker's certificate names localhost only
    else:
        endpoint = tls.endpoint(tls=False, ca_file=None, client_cert=None, client_key=None)
    link = MqttLink(endpoint, client_id="t-refused")
    caplog.set_level(logging.WARNING, logger="servicekit.mqtt")
    stop, task = await _run(link)
    try:
        # Refused, and said so (a missing client certificate shows under TLS 1.3 only after the
        # handshake, as a CONNACK that never comes: aiomqtt's 10 s connect timeout).
        warnings = await wait_until(lambda: [r.getMessage() for r in caplog.records if "link to" in r.getMessage()],
                                    timeout=15)
        assert link.connects == 0 and not link.connected
        if case in ("trusting another CA", "wrong host name"):
            assert any("CERTIFICATE_VERIFY_FAILED" in w for w in warnings), warnings
    finally:
        stop.set()
        await asyncio.wait_for(task, 25)  # a connect attempt under way runs to its 10 s timeout first

    # The same gateway, properly configured, gets in: the refusals above were about TLS.
    good = MqttLink(tls.endpoint(), client_id="t-good")
    stop, task = await _run(good)
    try:
        await good.wait_connected(10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.unit
@pytest.mark.parametrize(("fields", "reason"), [
    ({"tls": True, "client_cert": "CERT"}, "client_cert is set but client_key is not"),
    ({"tls": True, "client_key": "KEY"}, "client_key is set but client_cert is not"),
    ({"ca_file": "CA"}, "ca_file set but tls is false"),
    ({"password": "p"}, "password is set but username is not"),
    ({"tls": True, "ca_file": "/nonexistent/ca.crt"}, "ca_file"),
    ({"host": "10.0.0.2", "username": "gw-b1", "password": "p"}, "would cross the network to 10.0.0.2 in clear"),
])
def test_a_half_configured_endpoint_is_a_config_error(tmp_path: Path, fields: dict[str, object],
                                                      reason: str) -> None:
    files = {"CA": tmp_path / "ca.crt", "CERT": tmp_path / "c.crt", "KEY": tmp_path / "c.key"}
    for f in files.values():
        f.write_text("-")
    with pytest.raises(ValidationError, match=reason):
        MqttEndpoint(**{k: files.get(v, v) if isinstance(v, str) else v for k, v in fields.items()})


@pytest.mark.unit
def test_tls_is_off_unless_asked_for_and_verifies_when_on(tmp_path: Path) -> None:
    from servicekit.tls import mqtt_context
    import ssl

    assert mqtt_context(MqttEndpoint()) is None
    MqttEndpoint(host="localhost", username="midbrain-hub", password="p")  # loopback: never leaves the machine
    MqttEndpoint(host="10.0.0.2", username="gw-b1", password="p", tls=True)
    context = mqtt_context(MqttEndpoint(tls=True))  # the system's trust store
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
