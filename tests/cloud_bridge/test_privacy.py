import pytest
from pydantic import ValidationError

from cloud_bridge.privacy import to_city
from contract.city import CellSummary, CommunitySummary
from contract.messages import HubSummary, MetricStats, SummaryCell

pytestmark = pytest.mark.unit


def _hub_summary() -> HubSummary:
    stats = MetricStats(count=2, mean=21.0, min=20.0, max=22.0)
    return HubSummary(community="c1", window_start=60.0, window_end=120.0, cells=(
        SummaryCell(building="b1", device_class="temp_humidity", devices=2, online=1, readings=2,
                    metrics={"temperature": stats}),
        SummaryCell(building="b1", device_class="door_access", devices=1, online=1, readings=3,
                    metrics={"opens": stats, "forced": stats}),
    ), alerts={"fire": 1}, events={"service_request": 2})


def test_only_allow_listed_means_leave_the_community() -> None:
    out = to_city(_hub_summary())
    assert out.key == "c1:60000"
    assert out.cells[0].means == {"temperature": 21.0}
    assert out.cells[1].means == {}  # door openings describe residents' movements: not sent
    assert (out.devices, out.online, out.readings) == (3, 2, 5)


def test_a_field_not_on_the_allow_list_cannot_be_serialised() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CellSummary(building="b1", device_class="smoke", devices=1, online=1, readings=1, device_id="b1-smoke-01")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CommunitySummary(key="k", community="c1", window_start=0, window_end=1, devices=0, online=0, readings=0,
                         residents=["张三"])  # type: ignore[call-arg]


def test_the_same_hub_window_always_yields_the_same_key() -> None:
    assert to_city(_hub_summary()).key == to_city(_hub_summary()).key
