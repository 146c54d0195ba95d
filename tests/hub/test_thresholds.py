"""Desired thresholds as ingest checks them (the hysteresis and the rate limit through the
ingestor are in test_ingest.py): a twin document's limits, and limits replaced or cleared."""

import pytest

from hub.thresholds import Crossing, ThresholdWatch

pytestmark = pytest.mark.unit


def test_a_twin_documents_limits_are_what_ingest_checks() -> None:
    watch = ThresholdWatch()
    watch.set_limits("b1-th-01", {"interval_s": 5, "thresholds": {"temperature": {"low": 5.0, "high": 30.0},
                                                                  "humidity": {"rate_per_min": 10.0}}})
    assert watch.limits["b1-th-01"] == {"temperature": (5.0, 30.0, None), "humidity": (None, None, 10.0)}
    out: list[Crossing] = []
    watch.check("b1-th-01", 1.0, {"temperature": 4.0, "humidity": 50.0}, watch.limits["b1-th-01"], out)
    watch.check("b1-th-01", 61.0, {"temperature": 4.0, "humidity": 70.0}, watch.limits["b1-th-01"], out)
    assert out == [(1.0, "b1-th-01", "temperature", 4.0, "low", 5.0), (61.0, "b1-th-01", "humidity", 20.0, "rate", 10.0)]
    watch.set_limits("b1-th-01", {"interval_s": 5})  # thresholds removed from the desired state
    assert watch.limits["b1-th-01"] == {}
