"""Due times counted in service hours: a category open 08:00-18:00 with a 24-hour SLA is due
after 24 of its open hours, so a report at 23:00 starts its clock at 08:00 the next day."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def due_at(start: float, minutes: float, hours: tuple[int, int] | None, tz: ZoneInfo) -> float:
    """When ``minutes`` of service time have passed since ``start`` (epoch seconds); ``hours``
    are the local [open, close) whole hours of service, None meaning around the clock."""
    if hours is None:
        return start + minutes * 60
    opens, closes = hours
    if not 0 <= opens < closes <= 24:
        raise ValueError(f"service hours {hours}: need 0 <= open < close <= 24")
    left = minutes * 60
    now = datetime.fromtimestamp(start, tz)
    day = now.date()
    while True:
        open_at = datetime.combine(day, time(opens), tzinfo=tz).timestamp()
        close_at = (datetime.combine(day, time(0), tzinfo=tz) + timedelta(hours=closes)).timestamp()
        t = max(start, open_at)
        if t < close_at:
            if t + left <= close_at:
                return t + left
            left -= close_at - t
        day += timedelta(days=1)
