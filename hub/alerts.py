"""What an alert is, shared by its sources and its listeners: the kinds and how staff read
them, the :class:`RaisedAlert` event alerting (hub/alerting.py) passes on, and the debounce
policy that turns window scores into alerts (one per incident, not one per window).

A leaf module: it imports nothing of the hub's components, so scoring, alerting and work
orders can all use it without importing each other."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.windows import WindowScore

if TYPE_CHECKING:
    from hub.rules import CombinationRule

SEVERITY = {"fire": "critical", "spike": "warning", "stuck": "warning", "drift": "warning",
            "water_leak": "warning", "car_stuck": "critical", "door_fault": "warning"}
# How staff read each kind (work-order titles; the staff page has its own copy in both languages).
KIND_ZH = {"threshold": "超出阈值", "rate_of_change": "变化过快", "offline": "设备离线", "fire": "疑似火情",
           "spike": "读数突变", "stuck": "读数卡滞", "drift": "读数漂移", "water_leak": "夜间持续用水（疑似漏水）",
           "car_stuck": "电梯困停（运行中不换层）", "door_fault": "电梯门反复开关",
           "unusual": "读数偏离常态", "resident_emergency": "居民紧急求助"}
RESIDENT_EMERGENCY = "resident_emergency"  # a resident's report triaged as an emergency (hub.residents)


@dataclass(frozen=True, slots=True)
class AlertDecision:
    device: str
    metric: str
    kind: str
    score: float
    severity: str
    raised_at: float


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert the hub raised and recorded: what alerting tells its listeners (work orders)."""

    id: int
    at: float
    device: str
    metric: str  # a combined alert's metric is its rule's name
    kind: str
    score: float
    severity: str
    source: str  # the model, "rule", or "rule:<name>"
    rule: "CombinationRule | None" = None  # the rule of a combined alert


class AlertPolicy:
    """Raise when the score crosses ``threshold``; stay quiet for ``cooldown_s`` per series.

    The cooldown is the debounce: while an incident goes on, successive windows keep
    scoring high and must not raise again.
    """

    def __init__(self, threshold: float, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._last: dict[tuple[str, str], float] = {}

    def decide(self, scores: list[WindowScore]) -> list[AlertDecision]:
        raised = []
        for s in scores:
            if s.score < self.threshold:
                continue
            key = (s.device, s.metric)
            last = self._last.get(key)
            if last is not None and s.window_end - last < self.cooldown_s:
                continue
            self._last[key] = s.window_end
            raised.append(AlertDecision(s.device, s.metric, s.kind, s.score, SEVERITY.get(s.kind, "warning"),
                                        s.window_end))
        return raised
