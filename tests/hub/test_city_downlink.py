"""The city's items at the hub: verified, applied through the components they change
(summaries' interval), answered on a task of their own, and applied again after a restart."""

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from contract.downlink import ConfigChange, DownlinkItem, envelope, new_signing_key, sign_item
from contract.topology import Community
from hub.city_downlink import CityDownlink
from hub.downlink import DownlinkStore
from hub.inference import WindowModel
from hub.metrics import HubMetrics
from hub.model_reload import ModelReload
from hub.registry import Registry
from hub.scoring import Scoring
from hub.summaries import Summaries
from tests.hub.components import summaries, unconnected_link

pytestmark = pytest.mark.integration
PRIVATE, PUBLIC = new_signing_key()


def _city(tmp_path: Path, community: Community) -> tuple[CityDownlink, Summaries]:
    s, _ = summaries(tmp_path, community, interval_s=60)
    scoring = Scoring(WindowModel(), Registry(community, offline_after_s=30), HubMetrics(), window_s=60,
                      threshold=0.5, cooldown_s=60, patterns={})
    city = CityDownlink(community.id, PUBLIC, DownlinkStore(tmp_path / "hub.sqlite3"), tmp_path / "models",
                        s.apply_city_config, ModelReload(scoring, None, scoring.metrics).load_from_city,
                        HubMetrics(), unconnected_link(), publish_timeout_s=1)
    return city, s


async def test_an_item_is_applied_answered_and_applied_again_after_a_restart(tmp_path: Path,
                                                                           community: Community) -> None:
    city, s = _city(tmp_path, community)
    answers: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        answers.append(asyncio.create_task(coro, name=name))

    raw = envelope(sign_item(PRIVATE, DownlinkItem(seq=1, community=community.id, issued_at=1.0,
                                                    body=ConfigChange(summary_interval_s=300))))
    await city.answer(raw, spawn)
    assert s.interval_s == 300 and city.counts["applied"] == 1 and city.metrics.totals["downlink_applied"] == 1
    assert [t.get_name() for t in answers] == ["hub-downlink-answer-1"]
    await asyncio.gather(*answers)  # the broker away: logged, the bridge asks again
    await city.answer(raw, spawn)  # asked again: the kept answer, applied once
    assert city.counts["applied"] == 1 and city.counts["repeated"] == 1
    await asyncio.gather(*answers)

    again, s2 = _city(tmp_path, community)  # a restarted hub
    assert s2.interval_s == 60
    await again.restore(keep_window_model=False)
    assert s2.interval_s == 300


async def test_unreadable_bytes_are_counted_and_not_answered(tmp_path: Path, community: Community) -> None:
    city, _ = _city(tmp_path, community)
    spawned: list[str] = []

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        coro.close()
        spawned.append(name)

    await city.answer(b"not an item", spawn)
    assert city.metrics.totals["downlink_unreadable"] == 1 and spawned == []
