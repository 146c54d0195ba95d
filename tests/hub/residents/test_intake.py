"""The intake on real components: emergencies, the triage queue, duplicates, tracking by
ticket and PIN, rating, reopening, additions, retention."""

import re
import stat
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.accounts import Principal
from hub.residents.requests import Intake, NewRequest, RequestError
from hub.residents.requests.identity import load_or_create_key
from hub.residents.requests.pin_guard import PinRefused
from hub.workorders import WorkOrders
from tests.hub.residents.conftest import Clock

pytestmark = pytest.mark.integration

WANG = Principal("wang", "staff")
ZHANG = Principal("zhang", "supervisor")


def report(text: str, place: str = "north-gate", **kw: object) -> NewRequest:
    return NewRequest(channel=str(kw.pop("channel", "kiosk")), text=text, place=place, **kw)  # type: ignore[arg-type]


def test_an_emergency_raises_a_critical_alert_and_a_critical_order_at_once(intake: Intake) -> None:
    r = intake.submit(report("2单元楼道着火了，有烟冒出来", place="b1/u2", phone="13812345678"))
    assert r.emergency and not r.queued and r.work_order_id is not None
    assert re.fullmatch(r"XH-20261130-0001", r.ticket) and re.fullmatch(r"\d{6}", r.pin)
    order = intake.orders.get(r.work_order_id)
    assert order["severity"] == "critical" and order["status"] == "open" and order["building"] == "b1"
    [alert] = intake.alerts.log.latest(10)  # type: ignore[attr-defined]
    assert (alert["device"], alert["metric"], alert["kind"], alert["severity"]) == (
        "place:b1/u2", r.category, "resident_emergency", "critical")
    assert alert["model"] == f"ticket:{r.ticket}"
    assert "着火" not in str(alert) and "1381234" not in str(alert)  # neither the words nor the identity
    assert r.as_json()["emergency_numbers"][0]["number"] == "119"


def test_a_low_confidence_request_waits_for_a_supervisor(intake: Intake) -> None:
    r = intake.submit(report("你好，想说一件事"))
    assert r.queued and r.work_order_id is None and intake.orders.find() == []
    [queued] = intake.queue()
    assert queued["ticket"] == r.ticket and "pin_hash" not in queued
    assert intake.track(r.ticket, r.pin, "10.0.0.1")["status"] == "queued"
    done = intake.confirm(queued["id"], "sanitation", "normal", ZHANG)
    assert done.work_order_id is not None and intake.queue() == []
    assert intake.orders.get(done.work_order_id)["category"] == "sanitation"
    with pytest.raises(RequestError, match="not waiting"):
        intake.confirm(queued["id"], "sanitation", "normal", ZHANG)


def test_three_reports_of_one_broken_lamp_make_one_order_that_all_follow(intake: Intake, clock: Clock) -> None:
    first = intake.submit(report("北门的路灯坏了，晚上一片黑"))
    clock.now += 600
    second = intake.submit(report("北门路灯不亮了"))
    clock.now += 600
    third = intake.submit(report("小区北门口那盏路灯坏了不亮", phone="139 0000 1111"))
    assert not first.merged and second.merged and third.merged
    assert first.work_order_id == second.work_order_id == third.work_order_id
    assert len(intake.orders.find()) == 1
    assert intake.order_requests(first.work_order_id) == [first.ticket, second.ticket, third.ticket]
    intake.orders.act(first.work_order_id, "claim", WANG)
    intake.orders.act(first.work_order_id, "resolve", WANG, note="换了灯泡", now=clock.now)
    for r in (first, second, third):
        view = intake.track(r.ticket, r.pin, "10.0.0.1")
        assert view["status"] == "resolved" and view["can_rate"]
        assert view["replies"] == [{"at": clock.now, "by": "staff", "note": "换了灯泡"}]
        assert "wang" not in str(view)  # staff by role, not name
    # Another resident's words are not shown to the first one.
    assert "不亮了" not in str(intake.track(first.ticket, first.pin, "10.0.0.1"))


def test_the_same_problem_at_another_place_is_another_order(intake: Intake) -> None:
    a = intake.submit(report("路灯坏了", place="north-gate"))
    b = intake.submit(report("路灯坏了", place="east-gate"))
    c = intake.submit(report("路灯坏了", place="north-gate", channel="phone"))
    assert a.work_order_id != b.work_order_id and c.work_order_id == a.work_order_id
    assert len(intake.orders.find()) == 2


def test_a_report_after_the_window_or_after_resolution_is_a_new_order(intake: Intake, clock: Clock) -> None:
    a = intake.submit(report("路灯坏了"))
    clock.now += intake.settings.duplicate_window_h * 3600 + 1
    assert intake.submit(report("路灯坏了")).work_order_id != a.work_order_id


def test_wrong_pin_and_unknown_ticket_get_the_same_answer_and_are_limited(intake: Intake) -> None:
    r = intake.submit(report("北门路灯坏了"))
    wrong_pin = "000000" if r.pin != "000000" else "111111"
    answers = []
    for ticket, pin in ((r.ticket, wrong_pin), ("XH-20261130-9999", r.pin), ("AB-20261130-0001", r.pin)):
        with pytest.raises(RequestError) as caught:
            intake.track(ticket, pin, "10.0.0.9")
        answers.append((caught.value.status, caught.value.zh, caught.value.en))
    assert len(set(answers)) == 1 and answers[0][0] == 404
    # Per ticket: five wrong PINs (one above, four here, each from another address), then even
    # the right PIN waits.
    for n in range(4):
        with pytest.raises(RequestError):
            intake.track(r.ticket, wrong_pin, f"10.1.0.{n}")
    with pytest.raises(PinRefused):
        intake.track(r.ticket, r.pin, "10.2.0.1")
    # Per address: one address guessing at other tickets is stopped too.
    other = intake.submit(report("东门路灯坏了", place="east-gate"))
    for n in range(5):
        with pytest.raises(RequestError):
            intake.track(f"XH-20261130-{n + 100:04d}", "123456", "10.3.0.1")
    with pytest.raises(PinRefused):
        intake.track(other.ticket, other.pin, "10.3.0.1")
    assert intake.track(other.ticket, other.pin, "10.3.0.2")["ticket"] == other.ticket


def test_rate_once_when_resolved_and_reopen_within_days(intake: Intake, clock: Clock) -> None:
    r = intake.submit(report("北门路灯坏了"))
    with pytest.raises(RequestError, match="once it is resolved"):
        intake.rate(r.ticket, r.pin, "a", 5)
    intake.orders.act(r.work_order_id, "claim", WANG)
    intake.orders.act(r.work_order_id, "resolve", WANG, note="修好了", now=clock.now)
    view = intake.rate(r.ticket, r.pin, "a", 4, "挺快的")
    assert view["rating"]["stars"] == 4 and not view["can_rate"]
    with pytest.raises(RequestError, match="already rated"):
        intake.rate(r.ticket, r.pin, "a", 5)
    clock.now += 3 * 86400
    view = intake.reopen(r.ticket, r.pin, "a", "又不亮了")
    assert view["status"] == "reopened" and view["history"][-1] == {
        "at": clock.now, "status": "reopened", "by": "resident", "note": "又不亮了"}
    intake.orders.act(r.work_order_id, "claim", WANG)
    intake.orders.act(r.work_order_id, "resolve", WANG, note="换了线", now=clock.now)
    clock.now += 8 * 86400
    assert not intake.track(r.ticket, r.pin, "a")["can_reopen"]
    with pytest.raises(RequestError) as late:
        intake.reopen(r.ticket, r.pin, "a", "还是不亮")
    assert late.value.status == 409


def test_information_added_is_kept_and_noted_for_staff(intake: Intake) -> None:
    r = intake.submit(report("北门路灯坏了"))
    view = intake.add_info(r.ticket, r.pin, "a", "是靠近保安亭的那一盏")
    assert view["additions"][0]["text"] == "是靠近保安亭的那一盏"
    assert intake.orders.get(r.work_order_id)["events"][-1]["note"] == "是靠近保安亭的那一盏"
    with pytest.raises(RequestError, match="empty"):
        intake.add_info(r.ticket, r.pin, "a", "  ")


@pytest.mark.parametrize(("text", "place", "match"), [
    ("", "north-gate", "empty"), ("\x00\x07 \u202e", "north-gate", "empty"), ("灯" * 1001, "north-gate", "longer"),
    ("路灯坏了", "b9", "unknown place"), ("路灯坏了", "b1/u9", "unknown place")])
def test_bad_requests_are_refused_and_nothing_is_stored(intake: Intake, text: str, place: str, match: str) -> None:
    with pytest.raises(RequestError, match=match):
        intake.submit(report(text, place=place))
    assert intake.store.counts()["requests"] == 0 and intake.orders.find() == []


def test_script_is_stored_as_text_and_control_characters_go(intake: Intake) -> None:
    r = intake.submit(report("<script>alert(1)</script>路灯\x00坏了\u202e"))
    assert intake.track(r.ticket, r.pin, "a")["text"] == "<script>alert(1)</script>路灯坏了"


def test_identity_and_pin_are_kept_only_as_keyed_hashes(intake: Intake, tmp_path: Path) -> None:
    r = intake.submit(report("北门路灯坏了", household="1-2-301", phone="13812345678", contact_pref="sms"))
    row = intake.store.by_ticket(r.ticket)
    assert row is not None and r.pin not in str(row) and "13812345678" not in str(row) and "301" not in str(row)
    assert row["phone_hash"] == intake.identity.hash("phone", "138 1234 5678")
    key = tmp_path / "residents.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and load_or_create_key(key) == load_or_create_key(key)


def test_closed_requests_are_anonymised_after_the_retention(intake: Intake, clock: Clock) -> None:
    done = intake.submit(report("北门路灯坏了", phone="13812345678"))
    still = intake.submit(report("东门路灯坏了", place="east-gate"))
    intake.add_info(done.ticket, done.pin, "a", "靠近保安亭")
    intake.orders.act(done.work_order_id, "claim", WANG)
    intake.orders.act(done.work_order_id, "resolve", WANG, note="修好了")
    intake.rate(done.ticket, done.pin, "a", 5, "谢谢王师傅")
    assert intake.anonymise_closed(clock.now + 179 * 86400) == 0
    assert intake.anonymise_closed(clock.now + 181 * 86400) == 1  # the open one waits
    row = intake.store.by_ticket(done.ticket)
    assert row is not None and row["text"] == "" and row["phone_hash"] is None and row["pin_hash"] is None
    assert row["rating_comment"] is None and row["rating"] == 5 and row["place"] == "north-gate"
    assert intake.store.additions(row["id"]) == []
    with pytest.raises(RequestError):  # no PIN any more
        intake.track(done.ticket, done.pin, "b")
    assert intake.store.by_ticket(still.ticket)["text"] == "东门路灯坏了"  # type: ignore[index]


def test_a_work_order_gets_its_due_time_in_service_hours(tmp_path: Path) -> None:
    sh = ZoneInfo("Asia/Shanghai")
    orders = WorkOrders(tmp_path / "orders.sqlite3", timezone="Asia/Shanghai")
    late = orders.create(source="kiosk", category="sanitation", title="垃圾满了", actor="k",
                         now=datetime(2026, 12, 2, 23, tzinfo=sh).timestamp())
    assert orders.get(late)["due_at"] == datetime(2026, 12, 3, 11, tzinfo=sh).timestamp()  # 4 h SLA from 07:00
    orders.close()
