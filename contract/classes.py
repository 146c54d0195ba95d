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
    ELECTRICITY_METER = "electricity_meter"


# Classes with one device per household (a flat's meters): what they report, and the alerts
# raised on them, describe households, and leave the community only in cells of k or more.
HOUSEHOLD_CLASSES = frozenset({DeviceClass.WATER_METER, DeviceClass.ELECTRICITY_METER})


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    low: float
    high: float
    scored: bool = False  # windows of this metric are scored by the anomaly model
    label_zh: str = ""
    label_en: str = ""


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
            Metric("temperature", "°C", -40, 125, scored=True, label_zh="温度", label_en="Temperature"),
            Metric("humidity", "%RH", 0, 100, scored=True, label_zh="湿度", label_en="Humidity"),
        )),
        ClassSpec(DeviceClass.SMOKE, "烟感探测器", "Smoke detector", (
            Metric("smoke_density", "%obs/m", 0, 100, scored=True, label_zh="烟雾浓度", label_en="Smoke density"),
            Metric("alarm", "", 0, 1, label_zh="报警", label_en="Alarm"),
        )),
        ClassSpec(DeviceClass.WATER_METER, "水表", "Water meter", (
            # Household draws come and go: the water_leak pattern model reads meters, not the window model.
            Metric("flow_lpm", "L/min", 0, 1000, label_zh="瞬时流量", label_en="Flow"),
            Metric("total_m3", "m³", 0, 1e9, label_zh="累计用水", label_en="Total volume"),
            Metric("valve_open", "", 0, 1, label_zh="阀门开", label_en="Valve open"),
            Metric("battery_low", "", 0, 1, label_zh="电池欠压", label_en="Battery low"),
        )),
        ClassSpec(DeviceClass.ELEVATOR, "电梯", "Elevator", (
            Metric("running", "", 0, 1, label_zh="运行中", label_en="Running"),
            Metric("floor", "", -5, 100, label_zh="楼层", label_en="Floor"),
            Metric("door_open", "", 0, 1, label_zh="开门", label_en="Door open"),
            Metric("fault_code", "", 0, 65535, label_zh="故障码", label_en="Fault code"),
        )),
        ClassSpec(DeviceClass.DOOR_ACCESS, "门禁", "Door access", (
            Metric("opens", "", 0, 10000, label_zh="开门次数", label_en="Openings"),
            Metric("forced", "", 0, 1, label_zh="强行开门", label_en="Forced open"),
        )),
        ClassSpec(DeviceClass.BIN_FILL, "垃圾桶满溢", "Bin fill level", (
            Metric("fill_pct", "%", 0, 100, scored=True, label_zh="满溢度", label_en="Fill level"),
        )),
        ClassSpec(DeviceClass.AIR_QUALITY, "空气质量(PMS5003)", "Air quality (PMS5003)", (
            Metric("pm1_0", "µg/m³", 0, 1000, label_zh="PM1.0", label_en="PM1.0"),
            Metric("pm2_5", "µg/m³", 0, 1000, scored=True, label_zh="PM2.5", label_en="PM2.5"),
            Metric("pm10", "µg/m³", 0, 1000, label_zh="PM10", label_en="PM10"),
        )),
        ClassSpec(DeviceClass.KIOSK, "自助服务终端", "Self-service kiosk", (
            Metric("sessions", "", 0, 100000, label_zh="服务人次", label_en="Sessions"),
            Metric("paper_ok", "", 0, 1, label_zh="纸张正常", label_en="Paper OK"),
        )),
        ClassSpec(DeviceClass.ELECTRICITY_METER, "电能表(DL/T 645)", "Electricity meter (DL/T 645)", (
            Metric("energy_kwh", "kWh", 0, 1e8, label_zh="累计电量", label_en="Energy"),
            Metric("voltage_v", "V", 0, 500, label_zh="电压", label_en="Voltage"),
            Metric("current_a", "A", -1000, 1000, label_zh="电流", label_en="Current"),
            Metric("power_kw", "kW", -100, 100, label_zh="有功功率", label_en="Active power"),
        )),
    )
}
