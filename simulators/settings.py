"""Simulator and reference city platform settings."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contract.endpoints import MqttEndpoint


class CitySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8400, ge=0, le=65535)
    database: Path = Path("var/city.sqlite3")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    community_keys: dict[str, SecretStr] = {}  # community -> its batch signing key
    # Append every batch request as received (headers and the raw body, base64) to this
    # JSON-lines file: what an auditor, or the egress scan test, reads.
    capture: Path | None = None
    # The city broker, for communities whose bridge sends by MQTT (bridge.transport = "mqtt").
    mqtt: MqttEndpoint | None = None
    # The city's Ed25519 signing key (base64 of the 32-byte private key; `midbrain keygen`
    # makes a pair): it signs every item sent down. Communities hold its public half.
    signing_key: SecretStr = Field(default=SecretStr(""), description="set MIDBRAIN_CITY__SIGNING_KEY")
    # Bearer token of the city's operators, who issue notices, configuration and models
    # (POST /api/v1/downlink). Unset, nothing can be issued.
    operator_token: SecretStr = Field(default=SecretStr(""), description="set MIDBRAIN_CITY__OPERATOR_TOKEN")


class FaultSpec(BaseModel):
    """A fault the simulator injects into one device's readings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str
    kind: str = Field(pattern=r"^(spike|stuck|drift|dropout|fire|leak|car_stuck|door_fault)$")
    start_s: float = Field(ge=0)  # seconds after the simulator starts
    duration_s: float = Field(gt=0)
    magnitude: float = 1.0


class SimulateSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 20261127
    time_scale: float = Field(default=1.0, gt=0)  # >1 publishes faster than real time
    device_topic_prefix: str = "field"
    faults: tuple[FaultSpec, ...] = ()
    # Devices start once every gateway of the community is born (retained online state),
    # or after this many seconds, whichever comes first; 0 starts at once.
    wait_for_gateways_s: float = Field(default=30.0, ge=0)
