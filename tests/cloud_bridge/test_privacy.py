import pytest
from pydantic import ValidationError

from cloud_bridge.privacy import to_city
from contract.city import CellSummary, CommunitySummary, device_ref
from contract.messages import HubSummary, MetricStats, SummaryCell

pytestmark = pytest.mark.unit


def _hub_summary() -> HubSummary:
    stats = MetricStats(count=2, mean=21.0, min=20.0, max=22.0)
    return HubSummary(community="c1", window_start=60.0, window_end=120.0, cells=(
        SummaryCell(building="b1", device_class="temp_humidity", devices=2, online=1, readings=2,
                    metrics={"temperature": stats}),
        SummaryCell(building="b1", device_class="door_access", devices=1, online=1, readings=3,
                    metrics={"opens": stats, "forced": stats}),
    ), alerts={"fire": 1}, events={"service_request": 7})


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


def _cell(building: str, device_class: str, devices: int, flow: float | None = None) -> SummaryCell:
    metrics = {"flow_lpm": MetricStats(count=devices, mean=flow, min=flow, max=flow)} if flow is not None else {}
    return SummaryCell(building=building, device_class=device_class, devices=devices, online=devices,
                       readings=devices, metrics=metrics)


def test_household_cells_under_k_are_merged_or_suppressed_and_the_summary_says_so() -> None:
    summary = HubSummary(community="c1", window_start=0.0, window_end=60.0, cells=(
        _cell("b1", "water_meter", 3, 2.0), _cell("b2", "water_meter", 2, 5.0),  # 5 together: merged
        _cell("b3", "water_meter", 12, 1.0),  # big enough on its own
        _cell("b1", "electricity_meter", 2),  # 2 in the whole community: suppressed
        _cell("b1", "smoke", 1),  # not a household device: sent as it is
    ), events={"service_request": 3, "vote": 1, "gateway_restart": 1})
    out = to_city(summary, k=5)
    cells = {(c.building, c.device_class): c for c in out.cells}
    assert set(cells) == {("all", "water_meter"), ("b3", "water_meter"), ("b1", "smoke")}
    assert cells[("all", "water_meter")].devices == 5 and cells[("all", "water_meter")].means == {"flow_lpm": 3.2}
    # Totals are over what is sent: a suppressed count cannot be recovered by subtraction.
    assert (out.devices, out.k) == (18, 5)
    notes = {(n.what, n.action, n.into) for n in out.suppressed}
    assert notes == {
        ("cell b1/water_meter", "merged", "cell all/water_meter"), ("cell b2/water_meter", "merged", "cell all/water_meter"),
        ("cell b1/electricity_meter", "suppressed", ""),
        ("events service_request", "suppressed", ""), ("events vote", "suppressed", ""),
    }
    assert out.events == {"gateway_restart": 1}  # not a resident's doing: no threshold


def test_small_resident_counts_merge_into_other_when_that_reaches_k() -> None:
    out = to_city(HubSummary(community="c1", window_start=0.0, window_end=60.0, cells=(),
                             events={"service_request": 4, "feedback": 2, "vote": 9}), k=5)
    assert out.events == {"other": 6, "vote": 9}
    assert {(n.what, n.action) for n in out.suppressed} == {("events feedback", "merged"),
                                                            ("events service_request", "merged")}


def test_the_egress_allow_list_is_explicit() -> None:
    from contract.city import egress_allow_list

    allowed = egress_allow_list()
    assert {"summaries[].cells[].means", "summaries[].suppressed[].what", "community"} <= allowed
    assert not any("device" == p.rsplit(".", 1)[-1] or "resident" in p for p in allowed)


def test_requests_and_utilities_that_concern_fewer_than_k_households_do_not_leave_as_they_are() -> None:
    from contract.messages import HubHealth, UtilityUse, WorkOrderStats

    summary = HubSummary(
        community="c1", window_start=0.0, window_end=60.0, cells=(
            _cell("b1", "temp_humidity", 4), _cell("b1", "water_meter", 6, 1.0)),
        requests={"repair": 7, "noise": 2, "parking": 1},
        utilities=UtilityUse(electricity_kwh=3.5, electricity_meters=2, water_m3=0.8, water_meters=6),
        work_orders=WorkOrderStats(opened=3, resolved=2, overdue=1, median_minutes_to_resolve=42.0),
        hub=HubHealth(readings_stored=100, dead_letters=1, alerts_raised=2, devices=10, devices_online=9),
        alerts_by_severity={"critical": 1, "warning": 1})
    out = to_city(summary, k=5)
    assert out.requests == {"repair": 7}  # noise 2 + parking 1 = 3 < 5: suppressed
    assert out.utilities is not None and (out.utilities.water_m3, out.utilities.water_meters) == (0.8, 6)
    assert (out.utilities.electricity_kwh, out.utilities.electricity_meters) == (0.0, 0)  # 2 meters < 5
    assert {(n.what, n.action) for n in out.suppressed} == {
        ("requests noise", "suppressed"), ("requests parking", "suppressed"), ("utilities electricity", "suppressed")}
    assert out.work_orders == summary.work_orders and out.hub == summary.hub
    assert out.alerts_by_severity == {"critical": 1, "warning": 1}


@pytest.mark.unit
def test_shared_devices_offline_leave_only_as_salted_per_community_hashes() -> None:
    summary = HubSummary(community="c1", window_start=0.0, window_end=60.0, cells=(),
                         offline_devices=("b1-lift-01", "b1-wm-101"))
    sent = to_city(summary, device_salt=b"salt-of-c1", household_devices=frozenset({"b1-wm-101"}))
    (ref,) = sent.offline_devices  # the household meter is not referred to at all
    assert ref == device_ref(b"salt-of-c1", "c1", "b1-lift-01") and "b1-lift-01" not in sent.model_dump_json()
    assert to_city(summary.model_copy(update={"window_start": 60.0, "window_end": 120.0}), device_salt=b"salt-of-c1",
                   household_devices=frozenset({"b1-wm-101"})).offline_devices == (ref,)  # continuity across windows
    other = summary.model_copy(update={"community": "c2"})
    assert ref not in to_city(other, device_salt=b"salt-of-c2").offline_devices  # another community: unrelated
    assert to_city(summary).offline_devices == ()  # no salt configured: no device reference leaves


def test_alerts_on_household_devices_leave_only_as_one_count_of_k_or_more() -> None:
    from contract.messages import HubHealth

    def summary(leaks: int, offline_meters: int) -> HubSummary:
        household = {k: n for k, n in (("water_leak", leaks), ("offline", offline_meters)) if n}
        return HubSummary(
            community="c1", window_start=0.0, window_end=60.0, cells=(_cell("b1", "elevator", 2),),
            alerts={"car_stuck": 1, "offline": 2 + offline_meters, **({"water_leak": leaks} if leaks else {})},
            alerts_by_severity={"critical": 1, "warning": 2 + leaks + offline_meters},
            household_alerts=household, household_alerts_by_severity={"warning": leaks + offline_meters},
            hub=HubHealth(readings_stored=10, dead_letters=0, alerts_raised=3 + leaks + offline_meters, devices=9,
                          devices_online=9))

    few = to_city(summary(leaks=1, offline_meters=2), k=5)  # 3 household alerts < 5: nowhere to be seen
    assert few.alerts == {"car_stuck": 1, "offline": 2}  # the lifts' and the shared devices' own
    assert few.alerts_by_severity == {"critical": 1, "warning": 2}
    assert few.hub is not None and few.hub.alerts_raised == 3
    assert [(n.what, n.action) for n in few.suppressed] == [("alerts on household devices", "suppressed")]

    many = to_city(summary(leaks=2, offline_meters=4), k=5)  # 6: one merged count, types hidden
    assert many.alerts == {"car_stuck": 1, "offline": 2, "household": 6}
    assert many.alerts_by_severity == {"critical": 1, "warning": 8}
    assert many.hub is not None and many.hub.alerts_raised == 9
    assert [(n.what, n.action, n.into) for n in many.suppressed] == [
        ("alerts on household devices", "merged", "alerts household")]

    none = to_city(summary(leaks=0, offline_meters=0), k=5)
    assert none.alerts == {"car_stuck": 1, "offline": 2} and none.suppressed == ()
