"""Device profiles: ``config/devices/*.toml``, one file per bus.

A file names the gateway that polls it, the bus (protocol, timeouts, and either a serial
port and its settings or, for Modbus TCP, a host and TCP port), the device models on it
(class, points, poll interval, deadbands, writes allowed) and the devices (id, model,
address). Everything is validated at start; an error names the file, the key and the
reason.

The ``[bus]`` table is one of two shapes, chosen by ``protocol``::

    _BusBase        protocol, timeout_s, retries, gap_ms, reopen_s
    ├── BusSpec     a serial port: port (a device path), baudrate, parity, ...
    └── TcpBusSpec  modbus_tcp: host, port (TCP), reopen_max_s
"""

import glob
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.classes import CATALOG, DeviceClass
from contract.ids import Ident
from firmware_adapters import cjt188, dlt645
from firmware_adapters.line_sensor import LineFormat
from firmware_adapters.register_map import RegisterPoint

SerialProtocol = Literal["dlt645", "cjt188", "modbus", "pms5003", "line"]
Protocol = Literal[SerialProtocol, "modbus_tcp"]
MODBUS = ("modbus", "modbus_tcp")  # protocols whose points are register maps

# What each protocol can read, by the ``source`` a point names.
SOURCES: dict[str, set[str]] = {
    "dlt645": set(dlt645.QUANTITIES),
    "cjt188": {"total_m3", "valve_open", "battery_low"},
    "pms5003": {"pm1_0", "pm2_5", "pm10"},
}


_PROTOCOLS = frozenset(get_args(Protocol))  # Literal flattens the nested one: every protocol


class ProfileError(ValueError):
    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file, self.key, self.reason = str(file), key, reason


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PointSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)  # the metric reported to the hub
    source: str = ""  # protocol-specific: DL/T 645 quantity, CJ/T 188 field, line metric; default: name
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    deadband: float = Field(default=0.0, ge=0)  # report when the value moves more than this
    writable: bool = False
    # Modbus only
    table: Literal["holding", "input", "coil", "discrete"] | None = None
    address: int | None = Field(default=None, ge=0, le=0xFFFF)
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "bool"] = "uint16"
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"

    @property
    def key(self) -> str:
        return self.source or self.name

    def register(self) -> RegisterPoint:
        assert self.table is not None and self.address is not None
        return RegisterPoint(self.name, self.table, self.address, self.type, self.byte_order, self.word_order,
                             self.scale, self.offset)


class ModelSpec(_Strict):
    device_class: DeviceClass = Field(alias="class")
    interval_s: float = Field(default=10.0, gt=0, le=86400)
    max_report_s: float = Field(default=300.0, gt=0)  # report unchanged values at least this often
    # by_exception: a point is sent when it moves beyond its deadband or max_report_s passed;
    # every_poll: every reading is sent (for devices whose every sample matters downstream)
    report: Literal["by_exception", "every_poll"] = "by_exception"
    offline_after: int = Field(default=3, ge=1)  # failed polls in a row before device_offline
    points: tuple[PointSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _points_are_metrics(self) -> "ModelSpec":
        spec = CATALOG[self.device_class]
        for p in self.points:
            if spec.metric(p.name) is None:
                raise ValueError(f"point {p.name!r} is not a metric of {self.device_class.value} "
                                 f"(one of {', '.join(m.name for m in spec.metrics)})")
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError("point names repeat")
        return self


class DeviceEntry(_Strict):
    id: Ident
    model: str
    address: str = ""  # DL/T 645: 12 digits; CJ/T 188: 14 digits; Modbus (RTU or TCP): unit id 1-247
    name: str = Field(default="", max_length=64)
    interval_s: float | None = Field(default=None, gt=0, le=86400)


class _BusBase(_Strict):
    timeout_s: float = Field(default=0.5, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=10)
    gap_ms: float = Field(default=20.0, ge=0, le=10_000)  # silence between frames on the bus
    reopen_s: float = Field(default=2.0, gt=0)  # wait before reopening a port that failed


class BusSpec(_BusBase):
    """A serial bus (RS-485, RS-232, a USB adapter or a pseudo-terminal)."""

    protocol: SerialProtocol
    port: str = Field(min_length=1)
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    meter_type: int = Field(default=0x10, ge=0x10, le=0x49)  # CJ/T 188
    # line sensors
    format: Literal["regex", "json"] = "regex"
    pattern: str = ""
    keys: dict[str, str] = Field(default_factory=dict)
    request: str = ""  # sent before each read, e.g. "READ\r\n"; empty: the sensor talks by itself

    @property
    def link(self) -> str:
        """How logs, task names and stats name this bus."""
        return self.port


class TcpBusSpec(_BusBase):
    """Modbus TCP: one server (a meter, a PLC, or a TCP-to-RTU gateway with several unit ids)."""

    protocol: Literal["modbus_tcp"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    gap_ms: float = Field(default=0.0, ge=0, le=10_000)  # a TCP server queues requests itself
    reopen_s: float = Field(default=1.0, gt=0)  # first wait before reconnecting ...
    reopen_max_s: float = Field(default=30.0, gt=0)  # ... doubling (with jitter) up to this

    @property
    def link(self) -> str:
        return f"{self.host}:{self.port}"

    @model_validator(mode="after")
    def _backoff_grows(self) -> "TcpBusSpec":
        if self.reopen_max_s < self.reopen_s:
            raise ValueError(f"reopen_max_s ({self.reopen_max_s}) is less than reopen_s ({self.reopen_s})")
        return self


AnyBus = Annotated[BusSpec | TcpBusSpec, Field(discriminator="protocol")]


class BusFile(_Strict):
    gateway: Ident
    bus: AnyBus
    models: dict[str, ModelSpec]
    devices: tuple[DeviceEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "BusFile":
        protocol = self.bus.protocol
        seen_addresses: set[str] = set()
        for i, d in enumerate(self.devices):
            model = self.models.get(d.model)
            if model is None:
                raise ValueError(f"devices[{i}] ({d.id}): no model {d.model!r} in [models]")
            if d.address in seen_addresses and protocol != "line":
                raise ValueError(f"devices[{i}] ({d.id}): address {d.address!r} used twice on one bus")
            seen_addresses.add(d.address)
            _check_address(protocol, d)
            for p in model.points:
                _check_point(protocol, d.model, p)
        if protocol in ("pms5003", "line") and len(self.devices) > 1:
            raise ValueError(f"a {protocol} port carries one device")
        if protocol == "line":
            self.line_format()
        return self

    def line_format(self) -> LineFormat:
        assert isinstance(self.bus, BusSpec)
        return LineFormat(self.bus.format, pattern=self.bus.pattern, keys=dict(self.bus.keys))

    def model_of(self, device: DeviceEntry) -> ModelSpec:
        return self.models[device.model]


def _check_address(protocol: str, d: DeviceEntry) -> None:
    try:
        if protocol == "dlt645":
            dlt645.encode_address(d.address)
        elif protocol == "cjt188":
            cjt188.encode_address(d.address)
        elif protocol in MODBUS and not (d.address.isdigit() and 1 <= int(d.address) <= 247):
            raise ValueError(f"a Modbus unit id is 1-247, got {d.address!r}")
    except ValueError as exc:
        raise ValueError(f"device {d.id}: {exc}") from None


def _check_point(protocol: str, model: str, p: PointSpec) -> None:
    where = f"models.{model}.points.{p.name}"
    if protocol in MODBUS:
        if p.table is None or p.address is None:
            raise ValueError(f"{where}: a Modbus point needs table and address")
        p.register()  # validates type against table
        if p.writable and p.table not in ("holding", "coil"):
            raise ValueError(f"{where}: only holding registers and coils can be written")
        return
    if p.table is not None or p.address is not None:
        raise ValueError(f"{where}: table/address are Modbus settings, not {protocol}")
    if p.writable:
        raise ValueError(f"{where}: {protocol} points cannot be written")
    known = SOURCES.get(protocol)
    if known is not None and p.key not in known:
        raise ValueError(f"{where}: {protocol} has no source {p.key!r} (one of {', '.join(sorted(known))})")


def load_bus_file(path: Path) -> BusFile:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(path, "-", f"cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "-", f"not valid TOML: {exc}") from exc
    try:
        return BusFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if loc[:1] == ["bus"] and len(loc) >= 2 and loc[1] in _PROTOCOLS:
            del loc[1]  # the union's tag (bus.modbus_tcp.host): the file's key is bus.host
        key = ".".join(str(part) for part in loc) or "-"
        raise ProfileError(path, key, err["msg"].removeprefix("Value error, ")) from None


def load_bus_files(patterns: tuple[str, ...], base: Path | None = None) -> list[tuple[Path, BusFile]]:
    """Every file the glob patterns match (relative to ``base``), validated; device ids unique."""
    files: list[tuple[Path, BusFile]] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() or base is None else str(base / pattern)
        matches = sorted(glob.glob(full))
        if not matches and not glob.has_magic(pattern):
            raise ProfileError(pattern, "-", "file not found")
        files += [(Path(m), load_bus_file(Path(m))) for m in matches]
    seen: dict[str, Path] = {}
    for path, bus in files:
        for d in bus.devices:
            if d.id in seen:
                raise ProfileError(path, f"devices.{d.id}", f"device id also defined in {seen[d.id]}")
            seen[d.id] = path
    return files
