"""Shared helpers for the benchmarks: a private Mosquitto and a counting subscriber."""

import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.endpoints import MqttEndpoint  # noqa: E402
from midbrain.broker import BrokerProcess  # noqa: E402


def mosquitto() -> tuple[BrokerProcess, MqttEndpoint]:
    broker = BrokerProcess.choose("mosquitto", Path(tempfile.mkdtemp(prefix="mb-bench-")))
    broker.start()
    return broker, MqttEndpoint(host=broker.host, port=broker.port, reconnect_initial_s=0.05, reconnect_max_s=0.3)


def wait_hub_ready(url: str, timeout: float = 60.0) -> None:
    """Until the hub at ``url`` answers /healthz with its MQTT session up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json().get("mqtt_connected"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"the hub at {url} did not come up within {timeout:.0f} s")
