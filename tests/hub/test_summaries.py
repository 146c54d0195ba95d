"""The summaries component on its own: an interval's readings, alerts, dead letters and work
orders in one summary, kept until the broker takes it, revised by late readings, rolled up,
and the interval the city sets."""

import json
import time
from pathlib import Path

import pytest

from contract import topics
from contract.codec import decode_as
from contract.downlink import ConfigChange
from contract.messages import HubSummary
from contract.topology import Community
from tests.hub.components import summaries

pytestmark = pytest.mark.integration
TOPIC = topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01")


def _reading(seq: int, ts: float, value: float) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "boot": "b", "ts": ts, "device": "b1-th-01",
                       "metrics": {"temperature": value}}).encode()


def _kept(s: "object") -> list[HubSummary]:
    return [decode_as(HubSummary, body) for _, body in s.store.unpublished_summaries()]  # type: ignore[attr-defined]


async def test_an_interval_summary_carries_what_each_component_saw(tmp_path: Path, community: Community) -> None:
    s, orders = summaries(tmp_path, community)
    now = time.time()
    s.ingestor.handle(TOPIC, _reading(1, now, 21.0))
    s.ingestor.handle(TOPIC, _reading(2, now, 23.0))
    await s.alerting.raise_alert(now, "b1-wm-01", "flow_lpm", "water_leak", 0.9, "warning")
    s.count_dead(3)
    orders.create(source="request", category="repair", title="门坏了", actor="token:kiosk")
    await s.close_interval(final=True)
    [summary] = _kept(s)  # the broker is away: kept, and the miss counted
    assert s.metrics.totals["summary_publish_failures"] == 1
    assert summary.alerts == {"water_leak": 1} and summary.household_alerts == {"water_leak": 1}
    assert summary.dead_letters == 3
    assert summary.work_orders is not None and summary.work_orders.opened == 1
    [cell] = [c for c in summary.cells if c.device_class == "temp_humidity" and c.building == "b1"]
    assert cell.readings == 2 and cell.metrics["temperature"].max == 23.0
    # The next interval starts empty.
    await s.close_interval(final=True)
    second = _kept(s)[-1]
    assert second.alerts == {} and second.dead_letters == 0 and second.window_start == summary.window_end


async def test_late_readings_revise_the_summary_of_their_window(tmp_path: Path, community: Community) -> None:
    s, _ = summaries(tmp_path, community, interval_s=60)
    late = time.time() - 300  # an edge's replay: its window was summarised long ago
    window = late // 60 * 60
    s.ingestor.handle(TOPIC, _reading(1, late, 21.0))
    await s.close_interval(final=True)
    assert s.metrics.totals["late_readings"] == 1 and s.metrics.totals["summaries_from_late_data"] == 1
    s.ingestor.handle(TOPIC, _reading(2, late + 1, 25.0))
    await s.close_interval(final=True)
    assert s.metrics.totals["summaries_revised"] == 1
    [revised] = [k for k in _kept(s) if k.window_start == window]  # one key, its latest revision
    assert revised.revision == 1 and revised.window_end == window + 60
    [cell] = [c for c in revised.cells if c.device_class == "temp_humidity" and c.building == "b1"]
    assert cell.readings == 2 and cell.metrics["temperature"].max == 25.0


async def test_the_city_sets_the_interval(tmp_path: Path, community: Community) -> None:
    s, _ = summaries(tmp_path, community, interval_s=60)
    s.apply_city_config(ConfigChange(summary_interval_s=300))
    assert s.interval_s == 300
    s.apply_city_config(ConfigChange())  # nothing about the interval: it stays
    assert s.interval_s == 300
