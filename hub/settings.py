"""Hub settings (the ``[hub]`` section)."""

from pathlib import Path

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from contract.classes import DeviceClass
from hub.rules import DEFAULT_RULES, CombinationRule


class InfluxSettings(BaseModel):
    """The ``[hub.influx]`` section; absent means no sink."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    org: str = "midbrain"
    bucket: str = "midbrain"
    token: SecretStr = SecretStr("")  # better: MIDBRAIN_HUB__INFLUX__TOKEN in the environment
    batch_size: int = Field(default=5_000, ge=1)
    flush_interval_ms: int = Field(default=1_000, ge=10)
    retry_interval_ms: int = Field(default=1_000, ge=10)
    max_retries: int = Field(default=5, ge=0)
    max_retry_delay_ms: int = Field(default=30_000, ge=10)
    gzip: bool = True
    timeout_ms: int = Field(default=10_000, ge=100)


class DeadLetterSettings(BaseModel):
    """The ``[hub.dead_letters]`` section: how much of what the hub refused it keeps (hub/dead_letters.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rows: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)  # topic + detail + stored payload, summed
    keep_first_per_reason: int = Field(default=10, ge=0)  # never evicted (retention still applies)
    raw_prefix_bytes: int = Field(default=2048, ge=0)  # of each payload; its length and SHA-256 are kept whole


class NormalsSettings(BaseModel):
    """The ``[hub.normals]`` section: each device's learned normal (hub/normals/).

    A device of one of ``classes`` collects its good readings; after ``warmup_readings`` of
    them spanning ``warmup_min_s`` its normal is fitted, then refitted every ``refit_s`` on
    its recent readings that were not flagged. Its limits are set so that it raises at most
    about ``alerts_per_week`` false alerts a week (docs/hub.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    classes: tuple[DeviceClass, ...] = (DeviceClass.TEMP_HUMIDITY, DeviceClass.AIR_QUALITY,
                                        DeviceClass.ELECTRICITY_METER, DeviceClass.BIN_FILL)
    warmup_readings: int = Field(default=1440, ge=40)
    warmup_min_s: float = Field(default=86400.0, ge=0)
    refit_s: float = Field(default=86400.0, gt=0)
    alerts_per_week: float = Field(default=1.0, gt=0)
    buffer_readings: int = Field(default=10080, ge=50)  # ring buffer per device: the refit's rows
    smooth: int = Field(default=5, ge=1)  # readings in the trailing median (hub/normal.py)
    hold: int = Field(default=60, ge=0)  # readings an alarm stays raised after the last one over a limit
    keep_versions: int = Field(default=3, ge=1)  # exported versions kept per device
    restore: bool = True  # after a restart, score with each device's newest export (verified) at once
    inbox_size: int = Field(default=100_000, ge=100)  # readings waiting for the next scoring pass
    # A device's readings closer than this to the last one its normal took are left to the
    # other detectors: a burst (a replay, a misconfigured 1 kHz sender) costs the normal no
    # more than one reading a second per device (the scoring of one costs ~40 µs; docs/hub.md).
    min_spacing_s: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _buffer_holds_the_warmup(self) -> "NormalsSettings":
        if self.buffer_readings < self.warmup_readings:
            raise ValueError(f"buffer_readings ({self.buffer_readings}) must hold the warm-up "
                             f"(warmup_readings = {self.warmup_readings})")
        return self


class ResidentsSettings(BaseModel):
    """The ``[hub.residents]`` section: residents' requests (hub/residents/requests/)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_prefix: str = Field(default="XH", pattern=r"^[A-Z]{2,4}$")  # this community's tickets: XH-20261202-0042
    retention_days: float = Field(default=180, gt=0)  # closed requests' personal fields anonymised after this
    reopen_days: float = Field(default=7, gt=0)  # a resident may reopen within this of the resolution
    min_confidence: float = Field(default=0.5, ge=0, le=1)  # below it: the supervisor's triage queue
    duplicate_window_h: float = Field(default=3, gt=0)  # reports of one problem merge within this (chosen on training/data/duplicates_dev.jsonl)
    photo_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    text_max_chars: int = Field(default=1000, ge=10)
    pin_attempts: int = Field(default=5, ge=1)  # failed ticket+PIN tries per ticket and per address, per 15 min
    submit_per_minute: int = Field(default=30, ge=1)  # anonymous posts (and live triage) per client address


class HubSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8300, ge=0, le=65535)
    # The session cookie's Secure flag: None sets it when a request came over HTTPS (directly,
    # or through a TLS terminator on this host, whose X-Forwarded-Proto uvicorn trusts).
    cookie_secure: bool | None = None
    api_docs: bool = False  # /docs, /redoc and /openapi.json; Swagger UI loads from a CDN: development only
    database: Path = Path("var/hub.sqlite3")
    client_id: str = "midbrain-hub"
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    queue_size: int = Field(default=50_000, ge=10)
    write_batch: int = Field(default=2_000, ge=1)
    write_interval_s: float = Field(default=0.2, gt=0)
    # Flush (and acknowledge) as soon as this many messages wait; keep it at or below the
    # broker's max_inflight_messages (1000 in config/mosquitto/mosquitto.conf), or the
    # broker stops sending until the next timed flush.
    ack_batch: int = Field(default=500, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    stride_s: float = Field(default=10.0, gt=0)
    summary_interval_s: float = Field(default=60.0, gt=0)
    # Coarser windows summarised beside the interval's, each a whole multiple of it (e.g.
    # [3600] with a 300-s interval: every 5 minutes and hourly). Each is made, when its
    # window ends, from the interval summaries in it, and revised when late data revises them.
    summary_rollups_s: tuple[Annotated[int, Field(gt=0, le=31 * 86400)], ...] = ()
    # A reading older than the current summary window by more than late_grace_s is late: it
    # revises the summary of its own window (a new revision under the same key), as long as
    # that window is within revise_within_s.
    late_grace_s: float = Field(default=30.0, ge=0)
    revise_within_s: float = Field(default=86400.0, gt=0)
    offline_after_s: float = Field(default=120.0, gt=0)
    # A gateway that announced its stop (maintenance, a restart) raises its devices' offline
    # alerts only if it is not back within this long.
    planned_stop_grace_s: float = Field(default=3600.0, gt=0)
    # Ask a gateway for a rebirth when messages come from an agent run with no birth, or a live
    # seq jumps more than rebirth_seq_gap past the run's highest; at most once per interval.
    rebirth_seq_gap: int = Field(default=1000, ge=1)
    rebirth_min_interval_s: float = Field(default=60.0, gt=0)
    publish_timeout_s: float = Field(default=10.0, gt=0)  # wait for the broker before keeping a summary for later
    # Retention per category (days), and the roll-up resolutions kept after raw data goes:
    # raw readings and events, 1-minute and 1-hour aggregates, dead letters.
    retention_raw_days: float = Field(default=7, gt=0)
    retention_minute_days: float = Field(default=90, gt=0)
    retention_hour_days: float = Field(default=730, gt=0)
    retention_dead_letter_days: float = Field(default=30, gt=0)
    dead_letters: DeadLetterSettings = DeadLetterSettings()  # bounds by count and bytes, besides age
    retention_interval_s: float = Field(default=300, gt=0)  # how often roll-up and expiry run
    alert_threshold: float = Field(default=0.8, gt=0, lt=1)
    alert_cooldown_s: float = Field(default=300.0, ge=0)
    sla_check_interval_s: float = Field(default=30.0, gt=0)  # how often overdue work orders are escalated
    # A model folder (manifest.json + the ONNX file it names). Replace both, manifest last,
    # and the hub loads the new version within model_poll_s (or at POST /api/models/reload).
    model_poll_s: float = Field(default=10.0, gt=0)
    model_dir: Path | None = None  # default: the model shipped in hub/models/window_anomaly
    # The city's Ed25519 public key (base64): city items (notices, configuration, models) are
    # applied only if it verifies their signature. Unset, every item is refused (and reported).
    city_public_key: str = ""
    # The bridge's API, whose egress log (what left the community) the hub shows at /egress.
    bridge_url: str | None = "http://127.0.0.1:8310"
    downlink_model_dir: Path | None = None  # models the city sent; default: next to the database
    # Pattern detectors (hub/models/<name>): water leaks at night, elevator faults.
    pattern_models: tuple[str, ...] = ("water_leak", "elevator_fault")
    timezone: str = "Asia/Shanghai"  # the community's local time: what "night" means
    night_hours: tuple[int, int] = (23, 5)  # [start, end) local hours when households draw next to no water
    # Alerts that together are one incident (hub/rules.py); [[hub.rules]] in the config
    # replaces this list.
    rules: tuple[CombinationRule, ...] = DEFAULT_RULES
    residents: ResidentsSettings = ResidentsSettings()  # residents' requests: tickets, PINs, retention
    normals: NormalsSettings = NormalsSettings()  # per-device learned normals; off unless enabled
    influx: InfluxSettings | None = None  # an InfluxDB v2 write API that also gets committed telemetry

    @model_validator(mode="after")
    def _rollups_are_multiples(self) -> "HubSettings":
        for period in self.summary_rollups_s:
            if not is_multiple(period, self.summary_interval_s) or period <= self.summary_interval_s:
                raise ValueError(f"summary_rollups_s: {period} s is not a whole multiple (2 or more) of "
                                 f"summary_interval_s ({self.summary_interval_s:g} s)")
        return self


def is_multiple(period: float, step: float) -> bool:
    """``period`` is a whole number of ``step``s."""
    n = round(period / step)
    return n >= 1 and abs(n * step - period) < 1e-6
