"""The bridge delivers over TLS, verifying the city's certificate against a configured CA."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud_bridge.delivery import Deliverer, http_client
from cloud_bridge.outbox import Outbox
from cloud_bridge.settings import BridgeSettings
from contract.city import CommunitySummary
from servicekit.http import HttpServer
from simulators.city.app import create_app
from simulators.city.store import CityStore

pytestmark = pytest.mark.real


def _certificates(d: Path) -> tuple[Path, Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required for the TLS test")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=midbrain test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d / "city.key"), "-out", str(d / "city.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(d / "city.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "city.crt"))
    return d / "ca.crt", d / "city.crt", d / "city.key"


async def test_delivery_over_verified_tls_and_refusal_of_an_unknown_certificate(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, {"c1": b"k1"}), "127.0.0.1", 0, ssl_certfile=str(cert), ssl_keyfile=str(key))
    serving = asyncio.create_task(server.serve())
    await server.started()
    url = f"https://127.0.0.1:{server.port}"
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        outbox.add(CommunitySummary(key="c1:1", community="c1", window_start=1, window_end=2,
                                    devices=1, online=1, readings=1))
        outbox.seal("c1", 10)

        # Without our CA the city's certificate cannot be verified: not sent, kept, retried later.
        unverified = BridgeSettings(city_url=url, community_key="k1")
        async with http_client(unverified) as client:
            assert await Deliverer.http(outbox, unverified, client, "c1").deliver_one() is False
        assert outbox.stats()["batches_waiting"] == 1

        settings = BridgeSettings(city_url=url, ca_file=ca, community_key="k1")
        async with http_client(settings) as client:
            assert await Deliverer.http(outbox, settings, client, "c1").deliver_one() is True
        assert outbox.stats()["acknowledged"] == 1
        assert store.stats()["summaries"] == 1
    finally:
        outbox.close()
        server.stop()
        await serving
        store.close()
