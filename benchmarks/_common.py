"""Shared helpers for the benchmarks: a private Mosquitto and a counting subscriber."""

import os
import subprocess
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


def midbrain_env(**overrides: str) -> dict[str, str]:
    """This environment without any MIDBRAIN_* of the caller's, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
    env.update(overrides)
    return env


def start_hub(config: Path, port: int, env: dict[str, str], log_level: str = "WARNING") -> "subprocess.Popen[bytes]":
    """`midbrain hub --config config` serving on ``port``, returned once it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "midbrain", "hub", "--config", str(config), "--log-level", log_level],
                            env=env)
    wait_hub_ready(f"http://127.0.0.1:{port}")
    return proc
