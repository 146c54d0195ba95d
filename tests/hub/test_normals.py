"""The per-device learned normals (hub/normals/): budget, warm-up, refits, rising edges, and
the done-when test of issue 19: a noisy but normal device stays within its false-alarm
budget over a simulated week, and a real fault afterwards is raised."""

from pathlib import Path

import numpy as np
import pytest

from hub.normals import NormalDetectors, NormalStore
from hub.normals.budget import WEEK_S, Spent, cadence_s, per_reading_budget
from hub.settings import NormalsSettings

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0
DEVICE = "b1-th-01"


def _detectors(tmp_path: Path, **settings: object) -> NormalDetectors:
    s = NormalsSettings(enabled=True, **settings)  # type: ignore[arg-type]
    return NormalDetectors(s, NormalStore(tmp_path / "normals", s.keep_versions))


def _day_cycle(rng: np.random.Generator, minutes: range, fault: str = "none", fault_from: int = 10**9):
    """A thermometer's readings, one a minute: a daily cycle plus noise, humidity moving
    against temperature; from ``fault_from`` on, the fault."""
    out = []
    for m in minutes:
        phase = 2 * np.pi * (m % 1440) / 1440
        t, h = 20 + 3 * np.sin(phase) + rng.normal(0, 0.5), 50 - 8 * np.sin(phase) + rng.normal(0, 1.5)
        if m >= fault_from:
            k = m - fault_from
            if fault == "step":  # a heater left on: +4 °C at once
                t += 4.0
            elif fault == "spike":  # three readings far out
                t += 15.0 if k < 3 else 0.0
            elif fault == "stuck":  # the sensor's last values, frozen
                t, h = 21.0, 48.0
            elif fault == "erratic":  # a failing sensor: every reading wild
                t, h = t + rng.choice([-12.0, 12.0]), h + rng.choice([-30.0, 30.0])
            elif fault == "drift":  # a sensor drifting off: 0.05 °C a minute
                t += 0.05 * k
        out.append((T0 + 60.0 * m, DEVICE, "temp_humidity", {"temperature": float(t), "humidity": float(h)}))
    return out


def _week(tmp_path: Path, seed: int = 7) -> tuple[NormalDetectors, list, np.random.Generator]:
    rng = np.random.default_rng(seed)
    detectors = _detectors(tmp_path, warmup_readings=1440, warmup_min_s=86400, refit_s=86400, alerts_per_week=1)
    alerts = []
    for day in range(8):  # one day of warm-up, then a week active, one pass per simulated hour
        readings = _day_cycle(rng, range(day * 1440, (day + 1) * 1440))
        for hour in range(24):
            alerts += detectors.process(readings[hour * 60:(hour + 1) * 60])
    return detectors, alerts, rng


# Not "stuck" (raised on 2 of 5 seeds) nor a slow drift (0 of 5): docs/hub.md reports those misses.
@pytest.mark.parametrize("fault", ["step", "spike", "erratic"])
def test_a_normal_week_stays_within_its_budget_and_a_fault_after_it_is_raised(tmp_path: Path, fault: str) -> None:
    detectors, alerts, rng = _week(tmp_path)
    status = detectors.status()[0]
    assert status["state"] == "active" and status["fits"] == 7  # the warm-up fit and six daily refits
    assert len(alerts) <= 1 and status["spent"] == len(alerts)  # the budget: one false alert a week
    assert status["budget"]["alerts_per_week"] == 1.0
    start = 8 * 1440
    faulty = _day_cycle(rng, range(start, start + 600), fault, fault_from=start + 300)
    raised = detectors.process(faulty[:300])
    assert raised == []  # the same normal signal: quiet
    raised = detectors.process(faulty[300:])
    assert len(raised) == 1, raised  # one alert: the rising edge, not one per reading over the limit
    alert = raised[0]
    assert alert.kind == "unusual" and alert.severity == "warning" and alert.device == DEVICE
    assert alert.metric == "temperature+humidity"  # the device's channels together
    assert T0 + 60 * (start + 300) <= alert.raised_at <= T0 + 60 * (start + 310)  # within 10 readings
    after = detectors.status()[0]
    assert alert.source == after["model"] == f"normal-{DEVICE}@{DEVICE}.8"  # the day-8 refit's
    assert after["spent"] == len(alerts) + 1


def test_nothing_is_raised_during_warm_up_and_warm_up_needs_readings_and_time(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, warmup_readings=100, warmup_min_s=3600, refit_s=86400)
    rng = np.random.default_rng(1)
    wild = [(T0 + 10.0 * i, DEVICE, "temp_humidity",
             {"temperature": float(rng.normal(20, 5)), "humidity": float(rng.normal(50, 10))}) for i in range(300)]
    assert detectors.process(wild) == []  # 300 readings in 3000 s: not yet the hour
    status = detectors.status()[0]
    assert status["state"] == "warming_up" and status["warmup"] == {
        "readings": 100, "of": 100, "min_s": 3600.0, "since": T0, "elapsed_s": 2990.0}
    assert status["model_version"] is None and status["spent"] == 0
    detectors.process([(T0 + 3600.0, DEVICE, "temp_humidity", {"temperature": 20.0, "humidity": 50.0})])
    status = detectors.status()[0]
    assert status["state"] == "active" and status["model_version"] == f"{DEVICE}.1"
    assert status["refit_at"] == T0 + 3600.0 + 86400.0


def test_rows_follow_the_class_channels_and_wait_for_every_channel(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, warmup_readings=50, warmup_min_s=0)
    detectors.add(DEVICE, "temp_humidity", T0, {"humidity": 50.0})  # no temperature yet: no row
    detectors.add(DEVICE, "temp_humidity", T0 + 1, {"temperature": 20.0})  # humidity carried forward
    detectors.add("b1-door-01", "door_access", T0, {"opens": 3.0})  # a class not configured: ignored
    assert detectors.process(detectors.take()) == []
    normal = detectors.devices[DEVICE]
    assert normal.channels == ("temperature", "humidity") and "b1-door-01" not in detectors.devices
    assert normal.status()["warmup"]["readings"] == 1
    assert normal.nbytes == NormalsSettings().buffer_readings * (8 * 2 + 8 + 1)


def test_the_inbox_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, inbox_size=100)
    for i in range(150):
        detectors.add(DEVICE, "temp_humidity", T0 + i, {"temperature": 20.0, "humidity": 50.0})
    assert len(detectors.take()) == 100 and detectors.dropped == 50


def test_a_burst_faster_than_min_spacing_is_subsampled(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, min_spacing_s=1.0)
    for i in range(100):  # 100 readings 0.1 s apart, then one older than the last taken
        detectors.add(DEVICE, "temp_humidity", T0 + 0.1 * i, {"temperature": 20.0, "humidity": 50.0})
    detectors.add(DEVICE, "temp_humidity", T0 + 5.0, {"temperature": 20.0, "humidity": 50.0})
    taken = detectors.take()
    assert [ts - T0 for ts, *_ in taken] == pytest.approx([float(s) for s in range(10)])
    assert detectors.skipped == 91


def test_an_alarm_that_stays_raised_raises_once(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, warmup_readings=1440, warmup_min_s=0)
    rng = np.random.default_rng(3)
    detectors.process(_day_cycle(rng, range(0, 1500)))
    raised = detectors.process(_day_cycle(rng, range(1500, 1800), "erratic", fault_from=1500))
    assert len(raised) == 1  # 300 wild readings in a row: one alarm, one alert
    assert detectors.devices[DEVICE].alarm


def test_an_overspent_device_is_widened_at_its_next_refit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    detectors = _detectors(tmp_path, warmup_readings=200, warmup_min_s=0, refit_s=3600, alerts_per_week=1)
    rng = np.random.default_rng(5)
    detectors.process(_day_cycle(rng, range(0, 200)))
    normal = detectors.devices[DEVICE]
    limits = normal.normal.t2_limit, normal.normal.q_limit  # type: ignore[union-attr]
    for at in (T0 + 60 * 150, T0 + 60 * 170, T0 + 60 * 190):  # three alerts spent this week
        normal.spent.add(at)
    normal.fit(T0 + 60 * 200)  # the same rows: only the widening differs
    assert normal.widen == 3.0 and "over its budget" in caplog.text
    assert normal.normal.t2_limit == pytest.approx(3 * limits[0])  # type: ignore[union-attr]
    assert normal.normal.q_limit == pytest.approx(3 * limits[1])  # type: ignore[union-attr]
    assert normal.manifest is not None and normal.manifest["limits"]["widen"] == 3.0


def test_a_device_whose_readings_never_vary_stays_in_warm_up_and_says_why(tmp_path: Path) -> None:
    detectors = _detectors(tmp_path, warmup_readings=60, warmup_min_s=0)
    detectors.process([(T0 + i, DEVICE, "temp_humidity", {"temperature": 20.0, "humidity": 50.0})
                       for i in range(100)])
    status = detectors.status()[0]
    assert status["state"] == "warming_up" and "no channel varies" in status["last_error"]


def test_the_budget_per_reading_comes_from_the_cadence_and_is_clamped() -> None:
    assert cadence_s(np.array([0.0, 60.0, 120.0, 3600.0, 3660.0])) == 60.0  # an outage does not count
    share, wanted = per_reading_budget(1.0, 60.0, 5, rows=20_000)
    assert wanted == pytest.approx(5 / 10_080) and share == wanted
    share, wanted = per_reading_budget(1.0, 60.0, 5, rows=1440)  # a day's warm-up cannot resolve 1/week
    assert share == pytest.approx(2 / 1440) and wanted < share
    assert per_reading_budget(1e6, 60.0, 5, rows=1440)[0] == 0.5
    with pytest.raises(ValueError, match="no cadence"):
        cadence_s(np.array([5.0, 5.0]))


def test_spent_counts_the_trailing_week() -> None:
    spent = Spent()
    for at in (0.0, 100.0, WEEK_S + 50.0):
        spent.add(at)
    assert spent.in_week(WEEK_S + 60.0) == 2 and spent.in_week(2 * WEEK_S + 60.0) == 0


def test_settings_refuse_a_buffer_smaller_than_the_warm_up() -> None:
    with pytest.raises(ValueError, match="buffer_readings"):
        NormalsSettings(warmup_readings=500, buffer_readings=100)


def test_a_restarted_hub_scores_with_the_newest_export_at_once_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    detectors, _, rng = _week(tmp_path)
    before = detectors.status()[0]
    start = 8 * 1440
    restarted = _detectors(tmp_path, warmup_readings=1440, warmup_min_s=86400, refit_s=86400)
    faulty = _day_cycle(rng, range(start, start + 600), "step", fault_from=start + 300)
    assert restarted.process(faulty[:300]) == []
    raised = restarted.process(faulty[300:])
    assert [a.source for a in raised] == [before["model"]]  # no day of warm-up: the export's normal
    status = restarted.status()[0]
    assert status["state"] == "active" and status["fits"] == 0
    # Its refit falls due but waits for a warm-up's rows of its own (600 now).
    assert status["refit_at"] < T0 + 60 * (start + 600) and status["model_version"] == before["model_version"]

    folder = tmp_path / "normals" / DEVICE / before["model_version"]
    (folder / "normal.onnx").write_bytes((folder / "normal.onnx").read_bytes() + b"\0")
    again = _detectors(tmp_path, warmup_readings=1440)
    again.process(faulty[:10])
    status = again.status()[0]
    assert status["state"] == "warming_up" and "does not match manifest" in status["last_error"]
