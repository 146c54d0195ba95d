"""Edge agent settings (the ``[edge]`` section)."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.endpoints import MqttEndpoint


class EdgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Where local MQTT devices publish their raw readings; defaults to the uplink broker.
    device_broker: MqttEndpoint | None = None
    device_topic_prefix: str = "field"
    # Serial buses described by device profiles (globs, relative to the config file's folder).
    device_files: tuple[str, ...] = ()
    state_dir: Path = Path("var/edge")  # dead letters and the spool live here
    birth_wait_s: float = Field(default=5.0, ge=0)  # how long birth waits for the local device link
    flush_timeout_s: float = Field(default=10.0, ge=0)  # how long SIGTERM waits for live messages to be acked
    inflight_window: int = Field(default=200, ge=1, le=65_000)  # QoS 1 messages awaiting PUBACK
    replay_max_rate: int = Field(default=50_000, ge=0)  # spool replay, records/s (0: as fast as the window allows)
    replay_bundle: int = Field(default=200, ge=1, le=1000)  # spooled records per backlog message
    # Replayed records awaiting PUBACK, at most: a live message queues behind no more than
    # this much replay on the connection (about 25 ms at 40,000 records/s).
    replay_inflight: int = Field(default=1_000, ge=1)
    live_queue: int = Field(default=5_000, ge=10)  # live messages waiting; beyond that they go to the spool
    spool_max_mb: int = Field(default=256, ge=1)
    spool_max_age_h: float = Field(default=168.0, gt=0)
    spool_full_policy: Literal["drop_oldest", "refuse_newest"] = "drop_oldest"
    spool_fsync: Literal["always", "interval", "never"] = "interval"
    health_interval_s: float = Field(default=30.0, gt=0)
    command_timeout_s: float = Field(default=5.0, gt=0)
