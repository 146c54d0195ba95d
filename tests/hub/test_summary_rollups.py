"""Summaries at several granularities: beside each interval window, coarser roll-up windows
(``hub.summary_rollups_s``) made from the interval summaries in them, and revised when
late data revises one of those."""

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest
from pydantic import ValidationError

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import HubHealth, HubSummary, MetricStats, SummaryCell, UtilityUse, WorkOrderStats
from contract.topology import Community
from hub.settings import HubSettings
from hub.summaries.build import roll_up
from tests.conftest import wait_until
from tests.hub.conftest import serving_hub
from tests.hub.test_hub_mqtt import pub


def _part(start: float, readings: int, mean: float, online: int, alerts: int, kwh: float) -> HubSummary:
    cell = SummaryCell(building="b1", device_class="temp_humidity", devices=4, online=online, readings=readings,
                       metrics={"temperature": MetricStats(count=readings, mean=mean, min=mean - 1, max=mean + 1)})
    return HubSummary(community="c1", window_start=start, window_end=start + 300, cells=(cell,),
                      alerts={"threshold": alerts} if alerts else {}, requests={"repair": 1},
                      offline_devices=("b1-th-0%d" % online,),
                      work_orders=WorkOrderStats(opened=1, resolved=0, overdue=online),
                      utilities=UtilityUse(electricity_kwh=kwh, electricity_meters=3),
                      hub=HubHealth(readings_stored=readings, dead_letters=0, alerts_raised=alerts, devices=4,
                                    devices_online=online))


@pytest.mark.unit
def test_a_rollup_adds_counts_merges_statistics_and_keeps_the_state_at_its_end() -> None:
    parts = [_part(3600.0, 10, 20.0, 4, 0, 1.5), _part(3900.0, 30, 24.0, 3, 2, 2.25)]
    orders = WorkOrderStats(opened=2, resolved=1, overdue=3, median_minutes_to_resolve=12.0)
    hour = roll_up(parts, 3600.0, 7200.0, 3600, orders)
    (cell,) = hour.cells
    assert (hour.window_start, hour.window_end, hour.period_s, hour.revision) == (3600.0, 7200.0, 3600, 0)
    assert cell.readings == 40 and (cell.devices, cell.online) == (4, 3)  # devices as at the window's end
    assert cell.metrics["temperature"] == MetricStats(count=40, mean=23.0, min=19.0, max=25.0)
    assert hour.alerts == {"threshold": 2} and hour.requests == {"repair": 2}
    assert hour.offline_devices == ("b1-th-03",) and hour.work_orders == orders
    assert hour.utilities == UtilityUse(electricity_kwh=3.75, electricity_meters=3)
    assert hour.hub == HubHealth(readings_stored=40, dead_letters=0, alerts_raised=2, devices=4, devices_online=3)
    assert roll_up(parts, 3600.0, 7200.0, 3600, orders, revision=2).revision == 2


@pytest.mark.unit
def test_a_rollup_that_is_not_a_multiple_of_the_interval_is_refused_with_its_reason() -> None:
    assert HubSettings(summary_interval_s=300, summary_rollups_s=(3600, 86400)).summary_rollups_s == (3600, 86400)
    with pytest.raises(ValidationError, match="1000 s is not a whole multiple"):
        HubSettings(summary_interval_s=300, summary_rollups_s=(1000,))
    with pytest.raises(ValidationError, match="not a whole multiple"):
        HubSettings(summary_interval_s=300, summary_rollups_s=(300,))  # the interval itself


@pytest.mark.real
async def test_the_hub_publishes_rollups_beside_its_interval_summaries_and_revises_them(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    got: dict[tuple[int, float, int], HubSummary] = {}

    def reading(seq: int, ts: float, value: float, hist: bool = False) -> str:
        return json.dumps({"v": 1, "seq": seq, "boot": "r", "ts": ts, "device": "b1-th-01", "hist": hist,
                           "metrics": {"temperature": value}})

    def latest(period: int, start: float) -> HubSummary:
        return max((s for (p, w, _), s in got.items() if p == period and w == start), key=lambda s: s.revision)

    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as listener:
        await listener.subscribe(topics.hub_summary(community.id), qos=1)

        async def collect() -> None:
            async for message in listener.messages:
                s = decode_as(HubSummary, message.payload)  # type: ignore[arg-type]
                got[(s.period_s, s.window_start, s.revision)] = s

        collector = asyncio.create_task(collect())
        try:
            async with serving_hub(tmp_path, community, mosquitto, summary_interval_s=1.0, summary_rollups_s=(3,),
                                   late_grace_s=0.0) as (_, hub):
                topic = "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry"
                seq = 0
                deadline = time.time() + 20
                while time.time() < deadline and not any(p == 3 and w > hub.started for p, w, _ in got):
                    seq += 1
                    pub(mosquitto, topic, reading(seq, time.time(), 20.0 + seq % 5))
                    await asyncio.sleep(0.25)
                # A whole roll-up window after the hub started, and its interval windows.
                start = min(w for p, w, _ in got if p == 3 and w > hub.started)
                assert start % 3 == 0
                await wait_until(lambda: all((0, start + i, 0) in got for i in range(3)), timeout=10)
                parts = [latest(0, start + i) for i in range(3)]
                rolled = latest(3, start)
                assert rolled.window_end == start + 3 and rolled.revision == 0

                def th(s: HubSummary) -> SummaryCell:
                    return next(c for c in s.cells if c.building == "b1" and c.device_class == "temp_humidity")

                assert th(rolled).readings == sum(th(p).readings for p in parts) > 0
                assert th(rolled).metrics["temperature"].count == sum(
                    th(p).metrics["temperature"].count for p in parts if "temperature" in th(p).metrics)
                assert (th(rolled).devices, th(rolled).online) == (th(parts[-1]).devices, th(parts[-1]).online)

                # A reading of that roll-up's window arrives late (an edge's replay): the
                # interval window is revised, and so is the roll-up.
                pub(mosquitto, topic, reading(seq + 1, start + 1.5, 99.0, hist=True))
                await wait_until(lambda: (3, start, 1) in got, timeout=10)
                assert th(got[(3, start, 1)]).readings == th(rolled).readings + 1
                assert th(got[(3, start, 1)]).metrics["temperature"].max == 99.0
                assert hub.stats()["summary_rollups"] >= 1 and hub.stats()["summary_rollup_revisions"] == 1
        finally:
            collector.cancel()
