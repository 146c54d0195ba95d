"""Shared helpers for the benchmarks: a private Mosquitto and a counting subscriber."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.endpoints import MqttEndpoint  # noqa: E402
from midbrain.broker import BrokerProcess  # noqa: E402


def mosquitto() -> tuple[BrokerProcess, MqttEndpoint]:
    broker = BrokerProcess.choose("mosquitto", Path(tempfile.mkdtemp(prefix="mb-bench-")))
    broker.start()
    return broker, MqttEndpoint(host=broker.host, port=broker.port, reconnect_initial_s=0.05, reconnect_max_s=0.3)
