"""Real hub components on a real SQLite file, built as the composition root builds them, for
the focused tests of each component (no broker: the outbound link is never connected, so
what would be published is counted as not published)."""

from pathlib import Path

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.alerting import AlertLog, Alerting
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.rules import DEFAULT_RULES, CombinationRules
from servicekit.mqtt import MqttLink


def unconnected_link() -> MqttLink:
    """An outbound link that never connects (nothing listens on port 1)."""
    return MqttLink(MqttEndpoint(host="127.0.0.1", port=1), client_id="test-unconnected")


def alerting(tmp_path: Path, community: Community, registry: Registry | None = None,
             metrics: HubMetrics | None = None) -> Alerting:
    registry = registry or Registry(community, offline_after_s=30)
    return Alerting(AlertLog(tmp_path / "hub.sqlite3"), registry, CombinationRules(DEFAULT_RULES),
                    metrics or HubMetrics(), unconnected_link(), community.id)
