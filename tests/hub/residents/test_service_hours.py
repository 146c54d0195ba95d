"""Due times counted in each category's service hours, around midnight and across days."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hub.workorders.service_hours import due_at

SH = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.unit


def t(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=SH).timestamp()


@pytest.mark.parametrize(("start", "minutes", "due"), [
    (t(2, 23), 60, t(3, 9)),  # at 23:00: counted from 08:00 next day
    (t(3, 0, 30), 60, t(3, 9)),  # just after midnight: the same
    (t(3, 7, 59), 60, t(3, 9)),
    (t(3, 17, 30), 60, t(4, 8, 30)),  # half before closing, half the next morning
    (t(3, 10), 480, t(3, 18)),  # exactly to closing time
    (t(3, 10), 1440, t(5, 14)),  # 24 service hours = 8 + 10 + 6
    (t(3, 18), 30, t(4, 8, 30)),  # at closing time: closed
])
def test_repair_hours_8_to_18(start: float, minutes: float, due: float) -> None:
    assert due_at(start, minutes, (8, 18), SH) == due


def test_around_the_clock_and_bad_hours() -> None:
    assert due_at(t(2, 23), 60, None, SH) == t(3, 0)
    assert due_at(t(2, 23), 90, (0, 24), SH) == t(3, 0, 30)
    with pytest.raises(ValueError):
        due_at(t(2, 23), 60, (18, 8), SH)

