"""Alerting on its own: recorded, counted per interval, combined by the rules, passed on to
listeners (work orders) in order, and nothing lost when the broker is away."""

from pathlib import Path

import pytest

from contract.topology import Community
from hub.alerts import RaisedAlert
from tests.hub.components import alerting

pytestmark = pytest.mark.integration


async def test_an_alert_is_recorded_counted_and_passed_on(tmp_path: Path, community: Community) -> None:
    a = alerting(tmp_path, community)
    heard: list[RaisedAlert] = []

    async def listener(alert: RaisedAlert) -> None:
        heard.append(alert)

    a.listen(listener)
    alert_id = await a.raise_alert(100.0, "b1-wm-01", "flow_lpm", "water_leak", 0.9, "warning", "water_leak@1.0.0")
    assert [(r["id"], r["device"], r["kind"], r["model"], r["status"]) for r in a.log.latest(10)] == [
        (alert_id, "b1-wm-01", "water_leak", "water_leak@1.0.0", "open")]
    assert heard == [RaisedAlert(alert_id, 100.0, "b1-wm-01", "flow_lpm", "water_leak", 0.9, "warning",
                                 "water_leak@1.0.0")]
    # The broker is away: the record stays, the miss is counted.
    assert a.metrics.totals["alerts"] == 1 and a.metrics.totals["alerts_not_published"] == 1
    interval = a.take_interval()
    assert interval.by_kind == {"water_leak": 1} and interval.by_severity == {"warning": 1}
    assert interval.household == {"water_leak": 1}  # a water meter is a household's
    assert a.take_interval().by_kind == {}  # a new interval starts empty


async def test_a_rule_combines_alerts_and_its_alert_comes_first(tmp_path: Path, community: Community) -> None:
    a = alerting(tmp_path, community)
    heard: list[RaisedAlert] = []

    async def listener(alert: RaisedAlert) -> None:
        heard.append(alert)

    a.listen(listener)
    await a.raise_alert(100.0, "b1-smoke-01", "smoke", "fire", 1.0, "critical")
    await a.threshold_crossed(130.0, "b1-th-01", "temperature", 61.0, "high", 50.0)
    assert [(h.device, h.metric, h.kind) for h in heard] == [
        ("b1-smoke-01", "smoke", "fire"),
        ("b1-th-01", "fire_confirmed", "combined"),  # raised by the second alert, before it is passed on
        ("b1-th-01", "temperature", "threshold"),
    ]
    assert heard[1].rule is not None and heard[1].rule.category == "fire_safety"
    assert heard[1].severity == "critical" and heard[1].source == "rule:fire_confirmed"
    assert len(a.log.latest(10)) == 3 and a.log.count() == 3


async def test_an_alert_on_an_unknown_device_is_recorded_but_not_passed_on(tmp_path: Path,
                                                                          community: Community) -> None:
    a = alerting(tmp_path, community)
    heard: list[RaisedAlert] = []

    async def listener(alert: RaisedAlert) -> None:
        heard.append(alert)

    a.listen(listener)
    await a.raise_alert(1.0, "b9-ghost", "temperature", "spike", 0.9, "warning")
    assert a.log.count() == 1 and heard == [] and a.take_interval().by_kind == {"spike": 1}
