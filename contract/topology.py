"""The community as provisioned: buildings, gateways and devices.

Shared vocabulary: the edge reads the devices of its own gateway, the hub seeds its
registry, the simulators know what to simulate.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.classes import DeviceClass
from contract.ids import Ident


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Building(_Frozen):
    id: Ident
    name: str = Field(min_length=1, max_length=64)
    units: int = Field(default=0, ge=0, le=99)  # 单元: places b1/u1 .. b1/u<units> residents pick


class Area(_Frozen):
    """A common area residents may report a problem at (北门, 地下车库, ...)."""

    id: Ident
    name: str = Field(min_length=1, max_length=64)
    name_en: str = Field(default="", max_length=64)


class Gateway(_Frozen):
    id: Ident
    building: Ident


class SerialLink(_Frozen):
    """How a serial device is reached. ``port`` may be filled in at run time (simulators)."""

    protocol: Literal["pms5003"]
    port: str = ""
    baudrate: int = 9600
    timeout_s: float = Field(default=1.0, gt=0)


class DeviceSpec(_Frozen):
    id: Ident
    gateway: Ident
    device_class: DeviceClass = Field(alias="class")
    name: str = Field(default="", max_length=64)
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    serial: SerialLink | None = None


class Community(_Frozen):
    id: Ident
    name: str = Field(min_length=1, max_length=64)
    buildings: tuple[Building, ...] = Field(min_length=1)
    gateways: tuple[Gateway, ...] = Field(min_length=1)
    devices: tuple[DeviceSpec, ...] = ()
    common_areas: tuple[Area, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> "Community":
        buildings = {b.id for b in self.buildings}
        gateways = {g.id for g in self.gateways}
        for kind, ids in (("building", [b.id for b in self.buildings]),
                          ("gateway", [g.id for g in self.gateways]),
                          ("device", [d.id for d in self.devices]),
                          ("place", [b.id for b in self.buildings] + [a.id for a in self.common_areas])):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(dupes)}")
        for g in self.gateways:
            if g.building not in buildings:
                raise ValueError(f"gateway {g.id!r} names unknown building {g.building!r}")
        for d in self.devices:
            if d.gateway not in gateways:
                raise ValueError(f"device {d.id!r} names unknown gateway {d.gateway!r}")
        return self

    def gateway(self, gateway_id: str) -> Gateway:
        for g in self.gateways:
            if g.id == gateway_id:
                return g
        raise KeyError(gateway_id)

    def devices_of(self, gateway_id: str) -> tuple[DeviceSpec, ...]:
        return tuple(d for d in self.devices if d.gateway == gateway_id)

    def building_of(self, device: DeviceSpec) -> str:
        return self.gateway(device.gateway).building
