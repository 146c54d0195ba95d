import pytest

from edge.agent import LatencyWindow

pytestmark = pytest.mark.unit


def test_the_window_keeps_the_last_values_only() -> None:
    window = LatencyWindow(3)
    assert len(window) == 0 and list(window) == []
    window.append(0.5)
    assert list(window) == [0.5]
    for v in (1.0, 2.0, 3.0, 4.0):
        window.append(v)
    assert len(window) == 3 and sorted(window) == [2.0, 3.0, 4.0]
