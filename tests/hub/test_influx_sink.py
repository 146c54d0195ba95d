"""The optional InfluxDB sink against a real line-protocol server: VictoriaMetrics, which
accepts the InfluxDB v2 write API and reads back through its /api/v1/export API."""

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import encode, pack_backlog
from contract.endpoints import MqttEndpoint
from contract.messages import Telemetry
from contract.topology import Community
from hub.settings import InfluxSettings
from midbrain.broker import free_port, wait_for_port
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("victoria-metrics") or shutil.which("victoria-metrics", path="/usr/bin")
    if binary is None:
        pytest.fail("victoria-metrics is not installed (Debian: apt-get install victoria-metrics)")
    port = free_port()
    proc = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'vm'}",
                             "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def _export(url: str, match: str) -> list[dict]:
    """What the server holds, one series per line, after making recent writes searchable."""
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    text = httpx.get(f"{url}/api/v1/export", params={"match[]": match}, timeout=10).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_committed_readings_reach_the_sink_with_their_tags_and_times(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint, victoria_metrics: str) -> None:
    now = time.time()
    live = Telemetry(seq=1, boot="r1", ts=round(now - 5, 3), device="b1-th-01",
                     metrics={"temperature": 21.5, "humidity": 48.0})
    replayed = Telemetry(seq=2, boot="r1", ts=round(now - 60, 3), device="b1-th-01", metrics={"temperature": 19.25},
                         hist=True)
    sink = InfluxSettings(url=victoria_metrics, flush_interval_ms=100, batch_size=100)
    async with serving_hub(tmp_path, community, mosquitto, influx=sink) as (_, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(live), qos=1)
        await client.publish(topics.gateway_backlog(C, "gw-b1"),
                             pack_backlog([(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(replayed))]), qos=1)
        await client.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(live), qos=1)  # a redelivery
        series = await wait_until(lambda: _points(victoria_metrics) >= 3 and _export(victoria_metrics,
                                  '{__name__=~"temp_humidity_.*"}'), timeout=20, interval=0.3)
        written = hub.metrics.influx_points.labels("written")._value.get()
    by_name = {}
    for s in series:
        by_name.setdefault(s["metric"]["__name__"], []).append(s)
    temperature = by_name["temp_humidity_temperature"]
    live_series = next(s for s in temperature if "hist" not in s["metric"])
    hist_series = next(s for s in temperature if s["metric"].get("hist") == "true")
    assert {k: v for k, v in live_series["metric"].items() if k != "__name__"} == {
        "community": C, "building": "b1", "device_class": "temp_humidity", "device": "b1-th-01"}
    assert (live_series["values"], live_series["timestamps"]) == ([21.5], [round(live.ts * 1000)])
    assert (hist_series["values"], hist_series["timestamps"]) == ([19.25], [round(replayed.ts * 1000)])
    assert by_name["temp_humidity_humidity"][0]["values"] == [48.0]
    assert written == 2  # the redelivery was dropped before the sink


def _points(url: str) -> int:
    """Rows the server has taken in over the InfluxDB protocol (its own counter)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('vm_rows_inserted_total{type="influx"}'):
            return int(float(line.split()[-1]))
    return 0


async def test_a_sink_that_is_down_costs_grafana_a_gap_and_the_hub_nothing(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    sink = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", flush_interval_ms=50, retry_interval_ms=50,
                          max_retries=1, max_retry_delay_ms=100, timeout_ms=1000)
    async with serving_hub(tmp_path, community, mosquitto, influx=sink) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as client, \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        for seq in range(1, 6):
            reading = Telemetry(seq=seq, boot="r1", ts=time.time(), device="b1-th-01", metrics={"temperature": 20.0})
            await client.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(reading), qos=1)
        await wait_until(lambda: hub.metrics.influx_points.labels("dropped")._value.get() >= 5, timeout=20)
        rows = (await http.get("/api/telemetry", params={"device": "b1-th-01", "limit": 10})).json()
        metrics = (await http.get("/metrics")).text
    assert len({r["ts"] for r in rows}) == 5  # every reading stored in SQLite all the same
    assert 'midbrain_hub_influx_points_total{result="dropped"} 5.0' in metrics
    assert 'midbrain_hub_influx_points_total{result="retried"}' in metrics
