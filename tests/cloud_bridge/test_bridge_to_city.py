"""Summaries reach the city exactly once while the city and the bridge go down and come back."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, SummaryCell
from midbrain.broker import free_port
from tests.conftest import DEMO_CONFIG, wait_until

pytestmark = pytest.mark.real
C = "xihu-demo"


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "midbrain.cli", *self.args, "--config", str(DEMO_CONFIG)],
                                         env=self.env, stdout=fh, stderr=subprocess.STDOUT)

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)


def _summary(i: int) -> HubSummary:
    return HubSummary(community=C, window_start=1_000.0 + 60 * i, window_end=1_060.0 + 60 * i, cells=(
        SummaryCell(building="b1", device_class="smoke", devices=2, online=2, readings=i),))


async def test_no_summary_is_lost_or_duplicated(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    city_port, bridge_port = free_port(), free_port()
    env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(mosquitto.port),
           "MIDBRAIN_CITY__HTTP_PORT": str(city_port), "MIDBRAIN_CITY__DATABASE": str(tmp_path / "city.sqlite3"),
           "MIDBRAIN_BRIDGE__CITY_URL": f"http://127.0.0.1:{city_port}",
           "MIDBRAIN_BRIDGE__OUTBOX": str(tmp_path / "outbox.sqlite3"),
           "MIDBRAIN_BRIDGE__RETRY_INITIAL_S": "0.1", "MIDBRAIN_BRIDGE__RETRY_MAX_S": "0.5",
           "MIDBRAIN_BRIDGE__BATCH_INTERVAL_S": "0.1", "MIDBRAIN_BRIDGE__BATCH_LINGER_S": "0",
           "MIDBRAIN_BRIDGE__HTTP_PORT": str(bridge_port)}
    city = Proc(["city"], env, tmp_path / "city.log")
    bridge = Proc(["bridge", "--stats-file", str(tmp_path / "bridge.json"), "--drain-s", "5"], env, tmp_path / "bridge.log")
    city.start()
    bridge.start()
    sent = 0
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{city_port}") as http:

            async def at_city() -> int:
                try:
                    return (await http.get("/api/stats")).json()["summaries"]  # type: ignore[no-any-return]
                except httpx.HTTPError:
                    return -1

            async def publish(n: int) -> None:
                nonlocal sent
                for _ in range(n):
                    await hub.publish(topics.hub_summary(C), encode(_summary(sent)), qos=1)
                    sent += 1

            async def bridge_subscribed() -> bool:
                try:
                    health = (await http.get(f"http://127.0.0.1:{bridge_port}/healthz")).json()
                except httpx.HTTPError:
                    return False
                return bool(health["mqtt_connected"])

            # The broker keeps summaries for the bridge's session once it exists: wait for its first subscription.
            await wait_until(bridge_subscribed, timeout=30)
            await publish(5)
            await wait_until(lambda: _eq(at_city(), 5), timeout=20)

            assert city.signal(signal.SIGKILL) == -signal.SIGKILL  # the city platform dies
            await publish(5)
            await asyncio.sleep(1.0)  # the bridge retries into the void meanwhile
            # What an operator sees meanwhile: the backlog and the failed attempts.
            metrics = (await http.get(f"http://127.0.0.1:{bridge_port}/metrics")).text
            assert "midbrain_bridge_outbox_summaries 5.0" in metrics
            assert "midbrain_bridge_delivery_failures_total 0.0" not in metrics
            assert "midbrain_bridge_acknowledged_total 5.0" in metrics
            assert bridge.signal(signal.SIGTERM) == 0  # and the bridge restarts while the city is down
            await publish(3)  # held by the broker for the bridge's persistent session
            await hub.publish(topics.hub_summary(C), encode(_summary(2)), qos=1)  # a redelivery
            bridge.start()
            city.start()
            await wait_until(lambda: _eq(at_city(), sent), timeout=30)
            summaries = (await http.get("/api/summaries", params={"community": C, "limit": 1000})).json()
            # The egress log names every summary that left, each batch once, chained and signed.
            log = (await http.get(f"http://127.0.0.1:{bridge_port}/api/egress-log", params={"limit": 1000})).json()
            assert sorted(k for e in log for k in e["summaries"]) == sorted(s["key"] for s in summaries)
            assert all(e["destination"].endswith("/api/v1/batches") and len(e["body_sha256"]) == 64 for e in log)
            assert (await http.get(f"http://127.0.0.1:{bridge_port}/api/egress-log/verify")).json() == {
                "ok": True, "entries": len(log), "checked": len(log)}
        assert bridge.signal(signal.SIGTERM) == 0
        keys = [s["key"] for s in summaries]
        assert len(keys) == len(set(keys)) == sent == 13
        assert sorted(s["readings"] for s in summaries) == list(range(13))
        stats = (tmp_path / "bridge.json").read_text()
        assert '"acknowledged": 13' in stats and '"produced": 13' in stats and '"redelivered": 1' in stats
    finally:
        for p in (city, bridge):
            if p.proc is not None and p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait()


async def _eq(value: "asyncio.Future[int] | object", expected: int) -> bool:
    return (await value) == expected  # type: ignore[misc]
