"""Combination rules: alerts that together mean one incident.

A rule lists conditions (each matched by an alert's device class, metric and kind) that
must all hold within ``within_s`` of each other in the same scope (one device, one
building, or the whole community). When the last of them arrives, the rule raises one
alert of kind ``combined`` (its metric column is the rule's name) and stays quiet for that
scope until ``within_s`` has passed: one incident, one alert. For example, a smoke
detector alert and a temperature rise in the same building within five minutes are a
likely fire, not two unrelated readings.
"""

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.classes import DeviceClass
from hub.categories import CATEGORIES


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device_class: str | None = None
    metric: str | None = None
    kinds: tuple[str, ...] = ()  # any kind when empty

    @field_validator("device_class")
    @classmethod
    def _known_class(cls, value: str | None) -> str | None:
        if value is not None and value not in set(DeviceClass):
            raise ValueError(f"unknown device class {value!r} (known: {', '.join(DeviceClass)})")
        return value

    def matches(self, device_class: str, metric: str, kind: str) -> bool:
        return ((self.device_class is None or self.device_class == device_class)
                and (self.metric is None or self.metric == metric)
                and (not self.kinds or kind in self.kinds))


class CombinationRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    label_zh: str
    label_en: str
    all_of: tuple[Condition, ...] = Field(min_length=2)
    scope: Literal["device", "building", "community"] = "building"
    within_s: float = Field(default=300.0, gt=0)
    severity: Literal["info", "warning", "critical"] = "critical"
    category: str | None = None  # its work orders' category; by default that of the device that completed it

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str | None) -> str | None:
        if value is not None and value not in CATEGORIES:
            raise ValueError(f"unknown work-order category {value!r} (known: {', '.join(CATEGORIES)})")
        return value


DEFAULT_RULES = (
    CombinationRule(
        name="fire_confirmed", label_zh="烟感报警且温度骤升（疑似火情）", label_en="Smoke and a temperature rise",
        all_of=(Condition(device_class="smoke"),
                Condition(metric="temperature", kinds=("fire", "threshold", "rate_of_change"))),
        scope="building", within_s=300.0, severity="critical", category="fire_safety"),
)


@dataclass(frozen=True, slots=True)
class Combined:
    rule: CombinationRule
    scope_key: str
    at: float
    devices: tuple[str, ...]  # the devices whose alerts made it, one per condition


class CombinationRules:
    def __init__(self, rules: tuple[CombinationRule, ...]) -> None:
        self.rules = rules
        # (rule, scope) -> per condition: (time, device) of its latest matching alert
        self._seen: dict[tuple[str, str], list[tuple[float, str] | None]] = {}
        self._fired: dict[tuple[str, str], float] = {}

    def observe(self, at: float, device: str, building: str, device_class: str, metric: str,
                kind: str) -> list[Combined]:
        """One alert raised; the combinations it completes."""
        out = []
        for rule in self.rules:
            hits = [i for i, c in enumerate(rule.all_of) if c.matches(device_class, metric, kind)]
            if not hits:
                continue
            scope = {"device": device, "building": building, "community": "*"}[rule.scope]
            key = (rule.name, scope)
            seen = self._seen.setdefault(key, [None] * len(rule.all_of))
            for i in hits:
                seen[i] = (at, device)
            if any(s is None or at - s[0] > rule.within_s for s in seen):
                continue
            fired = self._fired.get(key)
            if fired is not None and at - fired < rule.within_s:
                continue  # the same incident
            self._fired[key] = at
            out.append(Combined(rule, scope, at, tuple(s[1] for s in seen if s is not None)))
        return out
