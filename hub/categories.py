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
    sla_minutes: float  # counted in service hours only (see ``hours``)
    volunteers: bool = False  # registered volunteer residents may claim these
    # Local service hours (start, end) in whole hours, end exclusive; None: around the clock.
    # A request that arrives outside them is accepted and queued; its SLA clock starts when
    # they open.
    hours: tuple[int, int] | None = None


CATEGORIES: dict[str, Category] = {
    "fire_safety": Category("消防安全", "Fire safety", 15),
    "water_leak": Category("漏水", "Water leak", 60),
    "elevator": Category("电梯故障", "Elevator", 30),
    "electrical": Category("电力", "Electrical", 120),
    "environment": Category("环境", "Environment", 240, volunteers=True),
    "sensor": Category("设备维护", "Device maintenance", 480),
    # The categories residents' requests are triaged into (hub/residents/triage), shared with alerts.
    "repair": Category("公共设施维修", "Public facility repair", 1440, hours=(8, 18)),
    "sanitation": Category("环境卫生与垃圾分类", "Sanitation and waste sorting", 240, volunteers=True, hours=(7, 20)),
    "safety": Category("治安与消防隐患", "Public safety and fire hazards", 120),
    "traffic": Category("交通与停车秩序", "Traffic and parking", 480, volunteers=True, hours=(7, 22)),
    "neighbour": Category("邻里纠纷", "Neighbour disputes", 1440, hours=(8, 20)),
    "care": Category("养老与儿童照料", "Elderly and child care", 240, hours=(8, 20)),
    "services": Category("政务咨询与办事", "Government services and enquiries", 1440, hours=(9, 17)),
    "neighbour_help": Category("邻里互助", "Neighbour help", 1440, volunteers=True),
    "other": Category("其他", "Other", 1440, hours=(9, 17)),
}

# The categories of the triage model (``midbrain triage``): each is a work-order category.
TRIAGE_CATEGORIES = ("repair", "sanitation", "safety", "traffic", "neighbour", "care", "services", "other")


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
