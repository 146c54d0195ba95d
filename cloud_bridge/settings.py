"""Bridge settings (the ``[bridge]`` section)."""

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator

from contract.city import DOWNLINK_MAX_WAIT_S
from contract.endpoints import MqttEndpoint, is_loopback


class BridgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=8310, ge=0, le=65535)  # /healthz and /metrics; None turns them off
    # How batches reach the city: "https" (POST to city_url) or "mqtt" (the city's broker,
    # city_mqtt; cloud_bridge/city_mqtt.py). The downlink always uses city_url.
    transport: Literal["https", "mqtt", "ngsi-ld"] = "https"
    city_url: str = "http://127.0.0.1:8400"
    city_mqtt: MqttEndpoint | None = None
    # "ngsi-ld": the context broker's base URL (default city_url), the community's public
    # location (longitude, latitude; AirQualityObserved requires one) and an optional tenant.
    ngsi_ld_url: str | None = None
    ngsi_ld_location: tuple[float, float] | None = None
    ngsi_ld_tenant: str | None = None
    outbox: Path = Path("var/bridge-outbox.sqlite3")
    client_id: str = "midbrain-bridge"
    remember_keys_s: float = Field(default=7 * 86400, gt=0)  # how long a produced key is remembered against redelivery
    # Outbox bounds (cloud_bridge/outbox.py): how many summaries may wait, what happens when
    # that many do ("refuse": the hub's broker keeps the new one; "drop_oldest": the oldest
    # routine one goes), and how old a summary may get before it is no use to the city.
    max_summaries: int = Field(default=1_000_000, ge=1)
    full_policy: Literal["refuse", "drop_oldest"] = "refuse"
    ttl_s: float = Field(default=7 * 86400, gt=0)
    small_cell_k: int = Field(default=5, ge=2)  # counts about fewer households or residents are merged or suppressed
    batch_max: int = Field(default=500, ge=1)
    max_in_flight: int = Field(default=3, ge=1, le=16)  # batches on their way to the city at once
    batch_interval_s: float = Field(default=1.0, gt=0)  # how often pending summaries are looked at for sealing
    # Routine summaries wait up to this long for others to share their batch (fewer requests,
    # better gzip); summaries with alerts are sealed at once. 0: seal whatever is pending.
    batch_linger_s: float = Field(default=300.0, ge=0)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)
    # The city's certificate and host name are always verified: against this CA if set, else
    # the system's trust store. A client certificate (with its key) is presented if set.
    ca_file: FilePath | None = None
    client_cert: FilePath | None = None
    client_key: FilePath | None = None
    # HMAC-SHA256 key shared with the city: signs every batch and every egress-log entry.
    community_key: SecretStr = Field(default=SecretStr(""), description="set MIDBRAIN_BRIDGE__COMMUNITY_KEY")
    # Salt of the device references sent to the city (contract.city.device_ref). Known only
    # inside the community (never the city: with it, guessed device ids could be checked);
    # unset, no device reference leaves at all. Set MIDBRAIN_BRIDGE__DEVICE_SALT.
    device_salt: SecretStr = Field(default=SecretStr(""), description="set MIDBRAIN_BRIDGE__DEVICE_SALT")
    # The city's Ed25519 public key (base64): items from the city are handed to the hub only
    # if it verifies their signature. Unset, every item is refused and the refusal reported.
    city_public_key: str = ""
    # The city holds a downlink request open up to downlink_wait_s when it has nothing
    # (long polling): an item comes down at once, and asking costs one request per wait.
    # 0: ask every downlink_poll_s instead (a city that does not hold requests is asked that
    # often anyway). downlink_poll_s is also how often answers and hand-overs are retried.
    downlink_wait_s: float = Field(default=DOWNLINK_MAX_WAIT_S, ge=0, le=DOWNLINK_MAX_WAIT_S)
    downlink_poll_s: float = Field(default=10.0, gt=0)
    downlink_resend_s: float = Field(default=60.0, gt=0)  # an item the hub has not answered is handed again
    gzip_min_bytes: int = Field(default=1024, ge=0)  # batches at least this large are sent gzip-compressed

    @model_validator(mode="after")
    def _transport_has_its_endpoint(self) -> "BridgeSettings":
        if self.transport == "mqtt" and self.city_mqtt is None:
            raise ValueError('transport "mqtt" needs bridge.city_mqtt (the city broker: host, port, credentials)')
        if self.transport == "ngsi-ld" and self.ngsi_ld_location is None:
            raise ValueError('transport "ngsi-ld" needs bridge.ngsi_ld_location: the community\'s [longitude, latitude]')
        if (self.client_cert is None) != (self.client_key is None):
            have, missing = ("client_cert", "client_key") if self.client_key is None else ("client_key", "client_cert")
            raise ValueError(f"TLS half-configured: {have} is set but {missing} is not (they go together)")
        for name in ("city_url", "ngsi_ld_url"):
            url = urlsplit(getattr(self, name) or "")
            if url.scheme == "http" and not is_loopback(url.hostname or ""):
                raise ValueError(f"{name} {getattr(self, name)!r} would leave this machine without TLS: use https://")
        return self
