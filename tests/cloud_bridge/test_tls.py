"""The bridge delivers over TLS only to a city whose certificate verifies against the
configured CA, for the host name in city_url; otherwise nothing is sent, the batch stays
in the outbox, and the refusal is counted and logged. Certificates from a test CA
(tests/pki.py); the city is the real city app under uvicorn with that certificate."""

import asyncio
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud_bridge.delivery import Deliverer, http_client
from cloud_bridge.outbox import Outbox
from cloud_bridge.settings import BridgeSettings
from contract.city import CommunitySummary
from servicekit.http import HttpServer
from simulators.city.app import create_app
from simulators.city.store import CityStore
from tests.pki import Pki

CASES = {  # case: (who issued the city's certificate, host name in city_url, CA the bridge trusts)
    "verified": ("our CA", "localhost", "our CA"),
    "certificate from another CA": ("another CA", "localhost", "our CA"),
    "wrong host name": ("our CA", "127.0.0.1", "our CA"),  # the certificate names localhost only
    "no ca_file: the system's trust store": ("our CA", "localhost", None),
}


@pytest.mark.real
@pytest.mark.parametrize("case", list(CASES))
async def test_the_city_certificate_is_verified_and_a_refusal_keeps_the_batch(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    issuer, host, trusted = CASES[case]
    pkis = {"our CA": Pki(tmp_path / "ours"), "another CA": Pki(tmp_path / "other", name="some other CA")}
    cert = pkis[issuer].server("city", names=("localhost",))
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, {"c1": b"k1"}), "127.0.0.1", 0, ssl_certfile=str(cert.cert),
                        ssl_keyfile=str(cert.key))
    serving = asyncio.create_task(server.serve())
    await server.started()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    caplog.set_level(logging.WARNING, logger="cloud_bridge.delivery")
    try:
        outbox.add(CommunitySummary(key="c1:1", community="c1", window_start=1, window_end=2,
                                    devices=1, online=1, readings=1))
        outbox.seal("c1", 10)
        settings = BridgeSettings(city_url=f"https://{host}:{server.port}", community_key="k1",
                                  ca_file=pkis[trusted].ca if trusted else None)
        async with http_client(settings) as client:
            deliverer = Deliverer.http(outbox, settings, client, "c1")
            delivered = await deliverer.deliver_one()
        if case == "verified":
            assert delivered is True and deliverer.certificate_refused == 0
            assert outbox.stats()["acknowledged"] == 1 and store.stats()["summaries"] == 1
        else:
            assert delivered is False and deliverer.certificate_refused == 1
            assert outbox.stats()["batches_waiting"] == 1 and store.stats()["summaries"] == 0  # kept, not sent
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert any("certificate of the city not verified" in e and host in e for e in errors), errors
    finally:
        outbox.close()
        server.stop()
        await serving
        store.close()


@pytest.mark.unit
def test_half_configured_tls_and_plain_http_off_the_machine_are_config_errors(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    client = pki.client()
    with pytest.raises(ValidationError, match="client_cert is set but client_key is not"):
        BridgeSettings(city_url="https://city.example", client_cert=client.cert)
    with pytest.raises(ValidationError, match="client_key is set but client_cert is not"):
        BridgeSettings(city_url="https://city.example", client_key=client.key)
    with pytest.raises(ValidationError, match="ca_file"):
        BridgeSettings(city_url="https://city.example", ca_file=tmp_path / "missing.crt")
    with pytest.raises(ValidationError, match="without TLS: use https://"):
        BridgeSettings(city_url="http://city.example:8400")
    BridgeSettings(city_url="http://127.0.0.1:8400")  # the demo's city, on this machine
    BridgeSettings(city_url="https://city.example", ca_file=pki.ca, client_cert=client.cert, client_key=client.key)
