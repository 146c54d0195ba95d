"""The device classes a community has, and the metrics each one reports.

The hub validates telemetry against this catalogue; the bridge uses it to know which
metrics may be averaged into a community summary.
"""

from dataclasses import dataclass
from enum import StrEnum


class DeviceClass(StrEnum):
    TEMP_HUMIDITY = "temp_humidity"
    SMOKE = "smoke"
    WATER_METER = "water_meter"
    ELEVATOR = "elevator"
    DOOR_ACCESS = "door_access"
    BIN_FILL = "bin_fill"
    AIR_QUALITY = "air_quality"
    KIOSK = "kiosk"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    scored: bool = False  # windows of this metric are scored by the anomaly model


@dataclass(frozen=True, slots=True)
class ClassSpec:
    device_class: DeviceClass
    label_zh: str
    label_en: str
    metrics: tuple[Metric, ...]

    def metric(self, name: str) -> Metric | None:
        for m in self.metrics:
            if m.name == name:
                return m
        return None


CATALOG: dict[DeviceClass, ClassSpec] = {
    spec.device_class: spec
    for spec in (
        ClassSpec(DeviceClass.TEMP_HUMIDITY, "温湿度传感器", "Temperature/humidity", (
            Metric("temperature", "°C", -40, 125, scored=True),
            Metric("humidity", "%RH", 0, 100, scored=True),
        )),
        ClassSpec(DeviceClass.SMOKE, "烟感探测器", "Smoke detector", (
            Metric("smoke_density", "%obs/m", 0, 100, scored=True),
            Metric("alarm", "", 0, 1),
        )),
        ClassSpec(DeviceClass.WATER_METER, "水表", "Water meter", (
            Metric("flow_lpm", "L/min", 0, 1000, scored=True),
            Metric("total_m3", "m³", 0, 1e9),
        )),
        ClassSpec(DeviceClass.ELEVATOR, "电梯", "Elevator", (
            Metric("running", "", 0, 1),
            Metric("floor", "", -5, 100),
            Metric("door_open", "", 0, 1),
            Metric("fault_code", "", 0, 65535),
        )),
        ClassSpec(DeviceClass.DOOR_ACCESS, "门禁", "Door access", (
            Metric("opens", "", 0, 10000),
            Metric("forced", "", 0, 1),
        )),
        ClassSpec(DeviceClass.BIN_FILL, "垃圾桶满溢", "Bin fill level", (
            Metric("fill_pct", "%", 0, 100, scored=True),
        )),
        ClassSpec(DeviceClass.AIR_QUALITY, "空气质量(PMS5003)", "Air quality (PMS5003)", (
            Metric("pm1_0", "µg/m³", 0, 1000),
            Metric("pm2_5", "µg/m³", 0, 1000, scored=True),
            Metric("pm10", "µg/m³", 0, 1000),
        )),
        ClassSpec(DeviceClass.KIOSK, "自助服务终端", "Self-service kiosk", (
            Metric("sessions", "", 0, 100000),
            Metric("paper_ok", "", 0, 1),
        )),
    )
}
