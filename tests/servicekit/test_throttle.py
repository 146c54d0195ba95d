import pytest

from servicekit.throttle import LogThrottle

pytestmark = pytest.mark.unit


def test_at_most_n_lines_per_key_per_interval_and_the_rest_reported() -> None:
    t = LogThrottle(per_interval=2, interval_s=10)
    assert [t.allow("schema", now=0)[0] for _ in range(5)] == [True, True, False, False, False]
    assert t.allow("oversize", now=1) == (True, 0)  # keys are independent
    assert t.allow("schema", now=10) == (True, 3)  # next interval: says how many were not logged
    assert t.allow("schema", now=11) == (True, 0)
