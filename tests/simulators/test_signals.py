"""The simulators' signals: seeded, and each injected fault does what it says."""

import numpy as np
import pytest

from contract.classes import CATALOG, DeviceClass
from simulators.signals import Device, Fault

pytestmark = pytest.mark.unit


def _series(fault: Fault | None, seed: int = 7, metric: str = "temperature",
            device_class: DeviceClass = DeviceClass.TEMP_HUMIDITY) -> np.ndarray:
    d = Device(device_class, seed, (fault,) if fault else ())
    return np.array([d.sample(float(t))[metric] for t in range(0, 400, 2)])


def test_the_same_seed_gives_the_same_readings_and_another_seed_does_not() -> None:
    assert np.array_equal(_series(None, seed=1), _series(None, seed=1))
    assert not np.array_equal(_series(None, seed=1), _series(None, seed=2))


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_every_class_reports_its_catalogue_metrics_within_range(device_class: DeviceClass) -> None:
    d = Device(device_class, 3)
    spec = CATALOG[device_class]
    for t in range(0, 600, 5):
        values = d.sample(float(t))
        assert set(values) == {m.name for m in spec.metrics}
        for name, v in values.items():
            metric = spec.metric(name)
            assert metric is not None and metric.low <= v <= metric.high


def test_stuck_freezes_the_value_for_the_fault_only() -> None:
    s = _series(Fault("stuck", 100, 100))
    during = s[55:95]  # t in [110, 190)
    assert np.ptp(during) == 0
    assert np.ptp(s[:45]) > 0 and np.ptp(s[105:]) > 0


def test_spike_makes_outliers() -> None:
    normal, spiked = _series(None), _series(Fault("spike", 100, 100, magnitude=2))
    assert np.max(np.abs(spiked[50:100] - normal[50:100])) > 5 * np.std(np.diff(normal))


def test_drift_grows_an_offset() -> None:
    offset = _series(Fault("drift", 0, 400)) - _series(None)
    assert offset[-1] > offset[50] > offset[5] >= 0


def test_fire_raises_temperature_fast_and_sets_off_smoke_alarms() -> None:
    temp = _series(Fault("fire", 200, 100))
    assert temp[149] - temp[99] > 30  # +0.8 °C/s
    smoke = Device(DeviceClass.SMOKE, 1, (Fault("fire", 0, 100),))
    assert smoke.sample(60.0)["alarm"] == 1.0


def test_dropout_silences_the_device() -> None:
    d = Device(DeviceClass.BIN_FILL, 1, (Fault("dropout", 10, 5),))
    assert [d.silent(t) for t in (9.9, 10.0, 14.9, 15.0)] == [False, True, True, False]
