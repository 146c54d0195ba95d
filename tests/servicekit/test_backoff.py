"""Retry delays: capped, jittered, and still capped after a very long outage."""

import random

import pytest

from servicekit.backoff import Backoff


@pytest.mark.unit
def test_delays_grow_to_the_cap_and_stay_within_it() -> None:
    b = Backoff(0.1, 5.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(50)]
    assert all(0.05 <= d <= 5.0 for d in delays)
    assert max(delays[20:]) > 2.5  # the ceiling reached the cap


@pytest.mark.unit
def test_a_broker_down_for_days_does_not_overflow_the_delay() -> None:
    # Found by the 10-minute outage benchmark: with a 0.3 s cap an agent retries ~3,000 times
    # in ten minutes, and 0.05 * 2**1100 raised OverflowError, which killed the agent.
    b = Backoff(0.05, 0.3, rng=random.Random(2))
    assert all(0.025 <= b.next_delay() <= 0.3 for _ in range(100_000))
    b.reset()
    assert b.next_delay() <= 0.05
