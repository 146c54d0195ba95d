"""An intake on real components (SQLite file, work orders, alerting), as the hub builds it."""

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest

from contract.topology import Community
from hub.metrics import HubMetrics
from hub.residents.requests import Intake, Places, RequestStore
from hub.residents.requests.identity import Identity, load_or_create_key
from hub.residents.requests.metrics import RequestMetrics
from hub.residents.triage.keywords import KeywordTriage
from hub.settings import ResidentsSettings
from hub.workorders import WorkOrders
from tests.hub.components import alerting


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())  # a Monday morning


@pytest.fixture
def intake(tmp_path: Path, community: Community, clock: Clock) -> Iterator[Intake]:
    db = tmp_path / "hub.sqlite3"
    metrics = HubMetrics()
    alerts = alerting(tmp_path, community, metrics=metrics)
    orders, store = WorkOrders(db), RequestStore(db)
    made = Intake(store, orders, Places(community), KeywordTriage(),
                  Identity(load_or_create_key(tmp_path / "residents.key")), ResidentsSettings(),
                  RequestMetrics(metrics.registry), raise_alert=alerts.raise_resident_alert, clock=clock)
    made.alerts = alerts  # type: ignore[attr-defined]  # for the tests' own look
    yield made
    orders.close()
    store.close()
    alerts.log.close()


