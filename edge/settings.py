"""Edge agent settings (the ``[edge]`` section)."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from contract.endpoints import MqttEndpoint


class EdgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Where local MQTT devices publish their raw readings; defaults to the uplink broker.
    device_broker: MqttEndpoint | None = None
    device_topic_prefix: str = "field"
    queue_size: int = Field(default=10_000, ge=10)  # bounded uplink queue (drop-oldest when full)
    serial_retry_s: float = Field(default=2.0, gt=0)
    state_dir: Path = Path("var/edge")  # dead letters (and, later, the spool) live here
    birth_wait_s: float = Field(default=5.0, ge=0)  # how long birth waits for the local device link
    flush_timeout_s: float = Field(default=10.0, ge=0)  # how long SIGTERM waits for the queue to drain
