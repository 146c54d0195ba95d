"""Real hub components on a real SQLite file, built as the composition root builds them, for
the focused tests of each component (no broker: the outbound link is never connected, so
what would be published is counted as not published)."""

from pathlib import Path
from typing import TYPE_CHECKING

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.alerting import AlertLog, Alerting
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.rules import DEFAULT_RULES, CombinationRules
from servicekit.mqtt import MqttLink

from hub.workorders import WorkOrders

if TYPE_CHECKING:
    from hub.summaries import Summaries


def unconnected_link() -> MqttLink:
    """An outbound link that never connects (nothing listens on port 1)."""
    return MqttLink(MqttEndpoint(host="127.0.0.1", port=1), client_id="test-unconnected")


def alerting(tmp_path: Path, community: Community, registry: Registry | None = None,
             metrics: HubMetrics | None = None) -> Alerting:
    registry = registry or Registry(community, offline_after_s=30)
    return Alerting(AlertLog(tmp_path / "hub.sqlite3"), registry, CombinationRules(DEFAULT_RULES),
                    metrics or HubMetrics(), unconnected_link(), community.id)


def summaries(tmp_path: Path, community: Community, *, interval_s: float = 60.0,
              rollups_s: tuple[int, ...] = ()) -> "tuple[Summaries, WorkOrders]":
    """The summaries component with the real ingest, alerting and work orders it reads from;
    and those work orders."""
    import asyncio
    import math

    from hub.inference import WindowModel
    from hub.ingest import Ingestor
    from hub.summaries import Summaries, SummaryStore
    from hub.windows import Windows

    db = tmp_path / "hub.sqlite3"
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    ingestor = Ingestor(registry, Windows(WindowModel(), 60), metrics, max_payload_bytes=64 * 1024)
    orders = WorkOrders(db)

    async def order_counts(since: float, until: float = math.inf) -> dict[str, object]:
        return await asyncio.to_thread(orders.counts, since, until)

    made = Summaries(SummaryStore(db), registry, ingestor, alerting(tmp_path, community, registry, metrics),
                     order_counts, metrics, unconnected_link(), community.id, interval_s=interval_s,
                     late_grace_s=5, revise_within_s=86400, rollups_s=rollups_s, publish_timeout_s=1)
    return made, orders
