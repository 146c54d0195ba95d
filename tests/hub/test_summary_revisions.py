"""Late readings (an edge's replay after an outage) revise their own window's summary: the
same window, hence the same key at the bridge and the city, with the next revision."""

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, MetricStats, SummaryCell, UtilityUse
from contract.topology import Community
from hub.summaries.build import revise
from tests.conftest import wait_until
from tests.hub.conftest import serving_hub
from tests.hub.test_hub_mqtt import pub


def _cell(readings: int, mean: float, lo: float, hi: float) -> SummaryCell:
    return SummaryCell(building="b1", device_class="temp_humidity", devices=4, online=3, readings=readings,
                       metrics={"temperature": MetricStats(count=readings, mean=mean, min=lo, max=hi)})


@pytest.mark.unit
def test_a_revision_folds_late_readings_into_the_kept_window() -> None:
    kept = HubSummary(community="c1", window_start=60.0, window_end=120.0, cells=(_cell(3, 20.0, 19.0, 21.0),),
                      utilities=UtilityUse(water_m3=1.0, water_meters=5))
    late = HubSummary(community="c1", window_start=60.0, window_end=120.0, cells=(_cell(1, 24.0, 24.0, 24.0),),
                      utilities=UtilityUse(water_m3=0.5, water_meters=1))
    revised = revise(kept, late)
    (cell,) = revised.cells
    assert revised.revision == 1 and revised.window_start == 60.0
    assert (cell.readings, cell.devices, cell.online) == (4, 4, 3)  # the window's devices, as they were
    assert cell.metrics["temperature"] == MetricStats(count=4, mean=21.0, min=19.0, max=24.0)
    assert revised.utilities == UtilityUse(water_m3=1.5, water_meters=6)
    assert revise(revised, late).revision == 2
    assert revise(None, late) is late  # a window never summarised: the late data is its first summary


@pytest.mark.real
async def test_an_edge_replay_revises_the_windows_it_belongs_to(tmp_path: Path, community: Community,
                                                                mosquitto: MqttEndpoint) -> None:
    got: dict[tuple[float, int], HubSummary] = {}

    def reading(seq: int, ts: float, value: float, hist: bool = False) -> str:
        return json.dumps({"v": 1, "seq": seq, "boot": "r", "ts": ts, "device": "b1-th-01", "hist": hist,
                           "metrics": {"temperature": value}})

    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as listener:
        await listener.subscribe(topics.hub_summary(community.id), qos=1)

        async def collect() -> None:
            async for message in listener.messages:
                s = decode_as(HubSummary, message.payload)  # type: ignore[arg-type]
                got[(s.window_start, s.revision)] = s

        collector = asyncio.create_task(collect())
        try:
            async with serving_hub(tmp_path, community, mosquitto, summary_interval_s=1.0, late_grace_s=0.0) as (_, hub):
                topic = "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry"
                live = time.time()
                pub(mosquitto, topic, reading(1, live, 20.0))
                await wait_until(lambda: any(sum(c.readings for c in s.cells) for s in got.values()), timeout=10)
                window = next(w for (w, _), s in got.items() if sum(c.readings for c in s.cells))
                assert window <= live < got[(window, 0)].window_end
                # The replay: one more reading of that (already published) window, and one of a
                # window ten minutes before the hub started, which it never summarised.
                pub(mosquitto, topic, reading(2, live, 30.0, hist=True))
                pub(mosquitto, topic, reading(3, live - 600.25, 10.0, hist=True))
                await wait_until(lambda: (window, 1) in got and (float(int(live - 600.25)), 0) in got, timeout=10)
                assert hub.stats()["stored"] == 3
        finally:
            collector.cancel()
    first, revised = got[(window, 0)], got[(window, 1)]
    cell = next(c for c in revised.cells if c.building == "b1" and c.device_class == "temp_humidity")
    before = next(c for c in first.cells if c.building == "b1" and c.device_class == "temp_humidity")
    assert (before.readings, cell.readings) == (1, 2)
    assert cell.metrics["temperature"] == MetricStats(count=2, mean=25.0, min=20.0, max=30.0)
    assert (cell.devices, cell.online) == (before.devices, before.online)
    assert revised.window_end == first.window_end
    old = got[(float(int(live - 600.25)), 0)]
    (old_cell,) = old.cells  # only what reported in that window
    assert (old_cell.readings, old_cell.online) == (1, 1) and old.window_end - old.window_start == 1.0
