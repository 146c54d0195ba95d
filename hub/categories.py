"""Work-order categories: their names, SLAs and who may claim them, and which category an
alert goes to.

A leaf module (it imports nothing of the hub), so that rules, alerting, work orders and the
residents' services can all name categories without importing one another.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    label_zh: str
    label_en: str
    sla_minutes: float
    volunteers: bool = False  # registered volunteer residents may claim these


CATEGORIES: dict[str, Category] = {
    "fire_safety": Category("消防安全", "Fire safety", 15),
    "water_leak": Category("漏水", "Water leak", 60),
    "elevator": Category("电梯故障", "Elevator", 30),
    "electrical": Category("电力", "Electrical", 120),
    "environment": Category("环境", "Environment", 240, volunteers=True),
    "sensor": Category("设备维护", "Device maintenance", 480),
    "sanitation": Category("环境卫生", "Sanitation", 240, volunteers=True),
    "repair": Category("报修", "Repair", 1440),
    "neighbour_help": Category("邻里互助", "Neighbour help", 1440, volunteers=True),
    "other": Category("其他", "Other", 1440),
}


# The categories of residents' requests a kiosk may report, as counted in summaries: the
# work-order categories and the kiosks' own short names for them.
REQUEST_CATEGORIES = frozenset(CATEGORIES) | {"cleaning", "security", "greening", "parking", "noise"}


def category_of_alert(kind: str, device_class: str) -> str:
    """The work-order category an alert of ``kind`` on a device of ``device_class`` goes to."""
    if kind == "fire" or device_class == "smoke":
        return "fire_safety"
    if device_class == "water_meter":
        return "water_leak"
    if device_class == "elevator":
        return "elevator"
    if device_class == "electricity_meter":
        return "electrical"
    if device_class in ("air_quality", "temp_humidity") and kind in ("threshold", "rate_of_change"):
        return "environment"
    if device_class == "bin_fill":
        return "sanitation"
    return "sensor"  # stuck, drifting or spiking readings: the device needs a look
