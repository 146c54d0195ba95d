"""Device status on its own: changes between online and offline recorded with the reason,
an alert when a reporting device stops, and a planned gateway stop alarmed only if it lasts."""

from pathlib import Path

import pytest

from contract.topology import Community
from hub.alerting import AlertLog
from hub.device_status import StatusWatch
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.twin import TwinStore
from tests.hub.components import alerting

pytestmark = pytest.mark.integration
T = 1_800_000_000.0


def _watch(tmp_path: Path, community: Community) -> tuple[StatusWatch, Registry]:
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    a = alerting(tmp_path, community, registry, metrics)
    return StatusWatch(TwinStore(tmp_path / "hub.sqlite3"), registry, a.raise_alert, offline_after_s=30,
                       planned_stop_grace_s=120, started=T - 1000), registry


def _offline_alerts(tmp_path: Path) -> list[str]:
    """Devices with an offline alert, from alerting's table."""
    log = AlertLog(tmp_path / "hub.sqlite3")
    try:
        return [r["device"] for r in log.latest(100) if r["kind"] == "offline"]
    finally:
        log.close()


async def test_a_device_that_stops_reporting_is_recorded_and_raised_once(tmp_path: Path,
                                                                          community: Community) -> None:
    watch, registry = _watch(tmp_path, community)
    registry.birth("gw-b1", "r1", "edge/1", T)
    registry.seen("b1-th-01", T, {"temperature": 21.0})
    await watch.check(T)
    assert watch.twin.status_history("b1-th-01") == [{"at": T, "online": True, "reason": "reporting"}]
    assert watch.twin.status_history("b1-th-02")[0]["reason"] == "never-heard"
    assert watch.twin.status_history("b2-th-01")[0]["reason"] == "gateway-offline"
    assert _offline_alerts(tmp_path) == []  # never reporting: nothing stopped
    await watch.check(T + 60)
    assert watch.twin.status_history("b1-th-01")[0] == {"at": T + 60, "online": False, "reason": "stale"}
    await watch.check(T + 61)
    assert _offline_alerts(tmp_path) == ["b1-th-01"]  # one alert a drop


async def test_a_planned_stop_is_alarmed_only_past_its_grace(tmp_path: Path, community: Community) -> None:
    watch, registry = _watch(tmp_path, community)
    registry.birth("gw-b2", "r1", "edge/1", T)
    registry.seen("b2-th-01", T, {"temperature": 21.0})
    await watch.check(T)
    registry.death("gw-b2", "r1", T + 5, clean=True)
    await watch.check(T + 6)
    assert watch.twin.status_history("b2-th-01")[0]["reason"] == "gateway-stopped"
    await watch.check(T + 60)
    assert _offline_alerts(tmp_path) == []  # a restart by an engineer: not yet
    await watch.check(T + 5 + 120)
    assert _offline_alerts(tmp_path) == ["b2-th-01"]


async def test_a_gateway_back_within_its_grace_raises_nothing(tmp_path: Path, community: Community) -> None:
    watch, registry = _watch(tmp_path, community)
    registry.birth("gw-b2", "r1", "edge/1", T)
    registry.seen("b2-th-01", T, {"temperature": 21.0})
    await watch.check(T)
    registry.death("gw-b2", "r1", T + 5, clean=True)
    await watch.check(T + 6)
    registry.birth("gw-b2", "r2", "edge/1", T + 30)
    registry.seen("b2-th-01", T + 30, {"temperature": 21.0})
    await watch.check(T + 31)
    await watch.check(T + 500)  # stale by now, but it came back in time: this drop is a new one
    assert _offline_alerts(tmp_path) == ["b2-th-01"]
    assert [h["reason"] for h in watch.twin.status_history("b2-th-01")] == [
        "stale", "reporting", "gateway-stopped", "reporting"]
