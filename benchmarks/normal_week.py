"""The learned normal's done-when week (tests/hub/test_normals.py) on more seeds and faults.

    python benchmarks/normal_week.py [--seeds 1-10] [--fault-seeds 1-5]

For each seed: a thermometer's day of warm-up and a simulated week (one reading a minute,
a daily cycle plus noise, one scoring pass per simulated hour), and how many alerts the
normal week raised against its budget of 1. Then, on the first ``--fault-seeds``, each
fault begins 300 readings after the week: whether it was raised within 300 readings, and
how many readings after it began. The signal and the week are the test's own
(``_day_cycle``, ``_week``), so this prints what the test asserts on its one seed.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.hub.test_normals import T0, _day_cycle, _week  # noqa: E402

FAULTS = ("step", "spike", "erratic", "stuck", "drift")


def _range(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_range, default=_range("1-10"))
    parser.add_argument("--fault-seeds", type=_range, default=_range("1-5"))
    args = parser.parse_args()
    print("| seed | alerts in the normal week (budget 1) | " + " | ".join(FAULTS) + " |")
    print("|---" * (2 + len(FAULTS)) + "|")
    for seed in args.seeds:
        cells = []
        with tempfile.TemporaryDirectory() as tmp:
            _, alerts, _ = _week(Path(tmp), seed)
        for fault in FAULTS:
            if seed not in args.fault_seeds:
                cells.append("")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                detectors, _, rng = _week(Path(tmp), seed)
                start = 8 * 1440
                faulty = _day_cycle(rng, range(start, start + 600), fault, fault_from=start + 300)
                detectors.process(faulty[:300])
                raised = detectors.process(faulty[300:])
            began = T0 + 60 * (start + 300)
            cells.append(f"raised, {round((raised[0].raised_at - began) / 60)} readings in" if raised else "missed")
        print(f"| {seed} | {len(alerts)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
