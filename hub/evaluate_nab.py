"""NAB's realKnownCause files scored by Numenta's own scorer, for hub/seasonal.py and
hub/normal.py beside every detector whose results NAB ships.

``python -m hub.evaluate_nab DATA_DIR --nab-repo PATH --nab-python PY``: DATA_DIR holds
``nab/`` as its README describes; PATH is a checkout of numenta/NAB (at the commit in
``nab/SOURCE.txt``) and PY a Python that can run its ``run.py`` (pandas < 2, see
docs/hub.md). Nothing of NAB is copied into this repository: this module writes our
detectors' scores in NAB's results format, copies NAB's shipped results for the same
files from the checkout into a scratch directory, and has the checkout's own code run the
steps of ``run.py --optimize --score --normalize`` there (through ``nab.runner.Runner``,
as ``run.py``'s ``main`` does, so that the shipped detectors' own dependencies are not
needed). They are the steps behind NAB's published ``results/final_results.json``:

- optimize: for each detector and each profile of ``config/profiles.json`` (standard,
  reward_low_FP_rate, reward_low_FN_rate), the one threshold on ``anomaly_score`` that
  maximises the summed score over the files scored (``nab/optimizer.py``);
- score: each file scored at that threshold (``nab/scorer.py``, ``nab/sweeper.py``), rows
  in a file's probationary period (the first 15 %, at most 750 rows) not counted;
- normalize: 100 · (score − null detector's score) / (perfect − null's score), perfect
  being one true positive per labelled window (``nab/runner.py``, ``normalize``).

Our detectors, one file at a time, point by point: hub/seasonal.py's normal (a seasonal
profile and levels that keep learning; ``hubSeasonal``) or hub/normal.py's (a level fitted
once; ``hubNormal``), fitted on the file's probationary rows (NAB scores none of them),
then fed each later reading with only the readings before it. The distance d (over 1
means over the limit; a reading the stream skips, its time not after the last one,
counts as 0) is written as anomaly_score = d / (1 + d), so 0.5 is the detector's own
limit. With an onset rule set (``onset`` readings for hubNormal, ``onset_hours`` for
hubSeasonal), a reading inside a raised alarm (within that hold of the last reading over
the limit) is written as 0: NAB counts the first detection in a window and charges every
detection outside one, so a held alarm only costs.

Two runs, each a separate NAB run over its own files (the optimize step chooses each
detector's thresholds on the files it scores, for every detector alike): the seven
realKnownCause files (NAB's protocol restricted to this category), and the six
evaluation files of the data README (the development file left out); after the first,
ours file by file (windows found, detections outside, how often over the limit). Our
settings are chosen on the development file alone (``--grid seasonal``, ``--grid normal``).
"""

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hub.normal import NormalSettings, fit_normal
from hub.seasonal import DAY, WEEK, SeasonalError, SeasonalSettings, fit_seasonal

CATEGORY = "realKnownCause"
DEVELOPMENT = "machine_temperature_system_failure.csv"
DETECTOR = "hubNormal"  # NAB splits result file names on "_": no underscore
# The same scores at the thresholds NAB's optimize step picks on the development file
# alone, not on the files scored: the figure with no evaluation label used at all.
HELD_OUT = "hubNormalDevThreshold"
SEASONAL = "hubSeasonal"
SEASONAL_HELD_OUT = "hubSeasonalDevThreshold"
OURS = {DETECTOR: "hub/normal.py", HELD_OUT: "hub/normal.py, thresholds from the development file",
        SEASONAL: "hub/seasonal.py", SEASONAL_HELD_OUT: "hub/seasonal.py, thresholds from the development file"}
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATIONARY_SHARE = 0.15  # NAB's probationary period: 15 % of a file, at most 0.15 · 5000 rows
PROBATIONARY_CAP = 750


@dataclass(frozen=True, slots=True)
class NabSettings:
    """Our detector on one univariate series: hub/normal.py's settings and the onset rule."""

    normal: NormalSettings = NormalSettings(hold=0)
    onset: int = 0  # > 0: only the first reading of an alarm keeps its score (readings held)


# Searched on the development file only (--grid), scored by NAB's scorer on that file.
GRID = [NabSettings(NormalSettings(slow_lag=lag, false_alarm_budget=budget, hold=0), onset)
        for lag in (0, 10) for budget in (0.01, 0.05) for onset in (0, 60, 288)]
# The rule: the highest standard score on the development file. It picked:
CHOSEN = NabSettings(NormalSettings(slow_lag=0, false_alarm_budget=0.05, hold=0), onset=288)


@dataclass(frozen=True, slots=True)
class SeasonalNabSettings:
    """hub/seasonal.py's settings and the onset rule."""

    seasonal: SeasonalSettings = SeasonalSettings()
    onset_hours: float = 0.0  # > 0: only the first reading of an alarm keeps its score (this long held)


# Searched on the development file only (--grid seasonal), scored by NAB's scorer on that file.
SEASONAL_GRID = [SeasonalNabSettings(SeasonalSettings(false_alarm_budget=budget, level_hours=levels), onset)
                 for budget in (0.01, 0.05) for levels in ((24.0,), (24.0, 720.0)) for onset in (5.0, 24.0)]
# The rule: the highest standard score on the development file. It picked:
SEASONAL_CHOSEN = SeasonalNabSettings(SeasonalSettings(false_alarm_budget=0.01, level_hours=(24.0,)), onset_hours=24.0)


# The steps of NAB's run.py (main(): initialize, optimize, score with the thresholds file
# just written, normalize), on one process; argv: data dir, results dir, windows file,
# profiles file, thresholds file, detectors, and thresholds (JSON, as in the thresholds
# file) that replace the optimized ones before scoring. Run with the NAB checkout as
# working directory.
_RUN_STEPS = """
import json, sys
from nab.runner import Runner
data, results, windows, profiles, thresholds, detectors, fixed = sys.argv[1:8]
runner = Runner(dataDir=data, resultsDir=results, labelPath=windows, profilesPath=profiles,
                thresholdPath=thresholds, numCPUs=1)
runner.initialize()
runner.optimize(detectors.split(","))
with open(thresholds) as fh:
    chosen = json.load(fh)
chosen.update(json.loads(fixed))
with open(thresholds, "w") as fh:
    json.dump(chosen, fh, indent=1)
runner.score(detectors.split(","), chosen)
runner.normalize()
"""


class NabError(Exception):
    """The data directory or the NAB checkout is not what this command expects."""


@dataclass(frozen=True, slots=True)
class NabFile:
    name: str  # "machine_temperature_system_failure.csv"
    path: Path
    timestamps: list[str]  # as written in the file, so NAB matches its labels exactly
    values: np.ndarray

    @property
    def times(self) -> np.ndarray:
        """Epoch seconds of each row, its timestamp read as UTC (NAB's are naive)."""
        return epoch_seconds(self.timestamps)


def epoch_seconds(timestamps: list[str]) -> np.ndarray:
    """Epoch seconds of NAB timestamps ("2014-01-01 00:05:00"), read as UTC."""
    try:
        return np.array([datetime.fromisoformat(t).replace(tzinfo=timezone.utc).timestamp() for t in timestamps])
    except ValueError as exc:
        raise NabError(f"not a NAB timestamp ({exc})") from exc


def probationary_rows(n: int) -> int:
    """Rows at the start of a file that NAB does not score (its probationary period)."""
    return int(min(math.floor(PROBATIONARY_SHARE * n), PROBATIONARY_CAP))


def load(nab_dir: Path) -> list[NabFile]:
    """The realKnownCause files, in name order."""
    paths = sorted((nab_dir / "data" / CATEGORY).glob("*.csv"))
    if not paths:
        raise NabError(f"{nab_dir}: no CSV files under data/{CATEGORY}/ (see the data README)")
    files = []
    for path in paths:
        with path.open(newline="") as fh:
            records = list(csv.DictReader(fh))
        try:
            files.append(NabFile(path.name, path, [r["timestamp"] for r in records],
                                 np.array([float(r["value"]) for r in records])))
        except (KeyError, ValueError) as exc:
            raise NabError(f"{path}: not a NAB data file ({exc})") from exc
    return files


def onset_only(distances: np.ndarray, hold: int) -> np.ndarray:
    """Zero every distance that falls within ``hold`` readings after one over 1 (the
    detector's limit); looks only back."""
    out = np.array(distances, dtype=np.float64)
    quiet = hold  # readings between this one and the last one over the limit
    for i, d in enumerate(distances):
        if quiet < hold:
            out[i] = 0.0
        quiet = 0 if d > 1.0 else quiet + 1
    return out


def anomaly_scores(values: np.ndarray, settings: NabSettings = CHOSEN) -> np.ndarray:
    """anomaly_score in [0, 1) for each reading; 0 over the probationary rows, which train."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    train = probationary_rows(len(values))
    stream = fit_normal(values[:train], settings.normal).stream(history=values[:train])
    distances = np.concatenate((np.zeros(train), stream.score_all(values[train:])))
    if settings.onset:
        distances = onset_only(distances, settings.onset)
    return distances / (1.0 + distances)


def seasonal_scores(values: np.ndarray, times: np.ndarray,
                    settings: SeasonalNabSettings = SEASONAL_CHOSEN) -> np.ndarray:
    """anomaly_score in [0, 1) for each reading by hub/seasonal.py; 0 over the probationary
    rows, which train, and for readings the stream skips."""
    values, times = np.asarray(values, dtype=np.float64), np.asarray(times, dtype=np.float64)
    train = probationary_rows(len(values))
    stream = fit_seasonal(values[:train], times[:train], settings.seasonal).stream()
    distances = np.nan_to_num(np.concatenate((np.zeros(train), stream.score_all(values[train:], times[train:]))))
    if settings.onset_hours:
        distances = onset_only_for(distances, times, settings.onset_hours * 3600.0)
    return distances / (1.0 + distances)


def onset_only_for(distances: np.ndarray, times: np.ndarray, hold: float) -> np.ndarray:
    """Zero every distance that falls within ``hold`` seconds after one over 1 (the
    detector's limit); looks only back."""
    out = np.array(distances, dtype=np.float64)
    last = -math.inf  # time of the last reading over the limit
    for i, (d, t) in enumerate(zip(distances, times, strict=True)):
        if t - last <= hold:
            out[i] = 0.0
        if d > 1.0:
            last = t
    return out


def write_results(path: Path, file: NabFile, scores: np.ndarray, labels: np.ndarray) -> None:
    """One file's results in NAB's format: timestamp, value, anomaly_score, label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("timestamp", "value", "anomaly_score", "label"))
        for t, v, s, y in zip(file.timestamps, file.values, scores, labels, strict=True):
            out.writerow((t, repr(float(v)), _written(s), int(y)))


def _written(score: float) -> str:
    """An anomaly score as the results file holds it (and so as NAB's scorer reads it)."""
    return f"{score:.12g}"


def labels_of(file: NabFile, windows: list[list[str]]) -> np.ndarray:
    """1 for each row inside a labelled window (NAB's results files carry this column)."""
    stamps = np.array([t[:19] for t in file.timestamps])
    out = np.zeros(len(stamps), dtype=int)
    for lo, hi in windows:
        out[(stamps >= lo[:19]) & (stamps <= hi[:19])] = 1
    return out


def shipped_detectors(nab_repo: Path) -> list[str]:
    """Every detector whose realKnownCause results NAB ships (results/<name>/realKnownCause/)."""
    names = sorted(p.parent.name for p in (nab_repo / "results").glob(f"*/{CATEGORY}"))
    if "null" not in names:
        raise NabError(f"{nab_repo}: no results/null/{CATEGORY}/ (is this a NAB checkout?)")
    return names


def run_nab(nab_repo: Path, python: str, files: list[NabFile], windows: dict[str, list],
            ours: dict[str, dict[str, np.ndarray]], detectors: list[str], work: Path,
            fixed: dict[str, dict[str, dict[str, float]]] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """NAB's own optimize, score and normalize over ``files`` for ``detectors`` (shipped
    results) and ours (``ours``: per detector name, anomaly scores per file name), each of
    ``fixed``'s detectors scored at the thresholds given there instead of optimized. Returns, per detector and
    profile, the normalised score, raw score and threshold."""
    keys = [f"{CATEGORY}/{f.name}" for f in files]
    (work / "data" / CATEGORY).mkdir(parents=True)
    for f in files:
        shutil.copyfile(f.path, work / "data" / CATEGORY / f.name)
    # Only these files' windows: NAB's perfect score counts every window in the file it reads.
    (work / "windows.json").write_text(json.dumps({k: windows[k] for k in keys}, indent=1))
    (work / "thresholds.json").write_text("{}")
    for name in detectors:
        for f in files:
            src = nab_repo / "results" / name / CATEGORY / f"{name}_{f.name}"
            dst = work / "results" / name / CATEGORY / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    for name, scores in ours.items():
        for f in files:
            write_results(work / "results" / name / CATEGORY / f"{name}_{f.name}", f, scores[f.name],
                          labels_of(f, windows[f"{CATEGORY}/{f.name}"]))
    # run.py's main() with --optimize --score --normalize, called through NAB's Runner so
    # that run.py's imports of every detector's own dependencies (scipy, julia...) are not needed.
    command = [python, "-c", _RUN_STEPS, str(work / "data"), str(work / "results"), str(work / "windows.json"),
               str(nab_repo / "config" / "profiles.json"), str(work / "thresholds.json"),
               ",".join(detectors + list(ours)), json.dumps(fixed or {})]
    done = subprocess.run(command, cwd=nab_repo, capture_output=True, text=True)
    (work / "nab.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        raise NabError(f"NAB's run.py failed ({done.returncode}); its output is in {work / 'nab.log'}")
    final = json.loads((work / "results" / "final_results.json").read_text())
    thresholds = json.loads((work / "thresholds.json").read_text())
    return {d: {p: {"normalised": final[d][p], **thresholds[d][p]} for p in PROFILES} for d in final}


def _table(title: str, results: dict[str, dict[str, dict[str, float]]],
           published: dict[str, dict[str, float]]) -> list[str]:
    lines = [f"\n{title}\n", "| rank | detector | standard | reward_low_FP | reward_low_FN "
             "| published, all 58 NAB files (standard / low FP / low FN) |", "|---|---|---|---|---|---|"]
    ranked = sorted(results, key=lambda d: -results[d]["standard"]["normalised"])
    for i, d in enumerate(ranked, 1):
        name = f"**{d} (ours: {OURS[d]})**" if d in OURS else d
        shipped = " / ".join(f"{published[d][p]:.2f}" for p in PROFILES) if d in published else ""
        lines.append(f"| {i} | {name} | " + " | ".join(f"{results[d][p]['normalised']:.2f}" for p in PROFILES)
                     + f" | {shipped} |")
    return lines


def _describe(s: NabSettings) -> str:
    slow = f"value by its {s.normal.slow_lag}-reading change if slow" if s.normal.slow_lag else "value by level"
    onset = f"onset only, {s.onset} held" if s.onset else "every reading"
    return f"{slow}, budget {s.normal.false_alarm_budget}, median of {s.normal.smooth}, {onset}"


def _describe_seasonal(s: SeasonalNabSettings) -> str:
    onset = f"onset only, {s.onset_hours:g} h held" if s.onset_hours else "every reading"
    levels = " and ".join(f"{h:g} h" for h in s.seasonal.level_hours)
    return f"budget {s.seasonal.false_alarm_budget}, slow levels {levels}, {onset}"


def _scores(files: list[NabFile], detector: str, settings: NabSettings | SeasonalNabSettings) -> dict[str, np.ndarray]:
    if detector == SEASONAL:
        return {f.name: seasonal_scores(f.values, f.times, settings) for f in files}
    return {f.name: anomaly_scores(f.values, settings) for f in files}


@dataclass(frozen=True, slots=True)
class FileHits:
    """One detector on one file at one threshold: what NAB's scorer is given to count."""

    windows: int
    found: int  # windows with a detection in them (after the probationary rows)
    outside: int  # detections outside every window (after the probationary rows)
    over_limit: float  # share of the scored rows over the detector's own limit, before the onset rule
    peak_in_windows: float  # highest distance d in a window, before the onset rule


def file_hits(file: NabFile, scores: np.ndarray, raw: np.ndarray, windows: list[list[str]],
              threshold: float) -> FileHits:
    """Windows found and detections outside them at ``threshold`` (NAB's sweeper counts a
    row as a detection when its anomaly_score reaches the threshold); ``raw``: the same
    detector's scores with every reading kept (no onset rule)."""
    scored = np.arange(len(scores)) >= probationary_rows(len(scores))
    # Compared as written to the results file: the threshold is one of those values.
    detected = (np.array([float(_written(s)) for s in scores]) >= threshold) & scored
    inside = np.zeros(len(scores), dtype=bool)
    found = 0
    for window in windows:
        mine = labels_of(file, [window]).astype(bool)
        inside |= mine
        found += bool((detected & mine).any())
    distance = np.asarray(raw) / (1.0 - np.asarray(raw))
    peak = float(distance[inside & scored].max()) if (inside & scored).any() else 0.0
    return FileHits(len(windows), found, int((detected & ~inside).sum()), float(np.mean(distance[scored] > 1.0)),
                    peak)


def seasonal_profile(file: NabFile, settings: SeasonalNabSettings = SEASONAL_CHOSEN) -> str:
    """The seasonal profile hub/seasonal.py chooses on the file's probationary rows."""
    train = probationary_rows(len(file.values))
    period = fit_seasonal(file.values[:train], file.times[:train], settings.seasonal).period
    return {DAY: "by hour of the day", WEEK: "by hour of the week"}.get(period, "none")


def _hits_table(files: list[NabFile], windows: dict[str, list], ours: dict[str, dict[str, np.ndarray]],
                raw: dict[str, dict[str, np.ndarray]], thresholds: dict[str, float]) -> list[str]:
    names = list(ours)
    lines = ["| file | windows | " + " | ".join(
        f"{d}: found / outside / over its limit / peak d in windows" for d in names) + f" | {SEASONAL}'s profile |",
        "|---|---|" + "---|" * (len(names) + 1)]
    totals = {d: [0, 0] for d in names}
    for f in files:
        cells = []
        for d in names:
            h = file_hits(f, ours[d][f.name], raw[d][f.name], windows[f"{CATEGORY}/{f.name}"], thresholds[d])
            totals[d][0] += h.found
            totals[d][1] += h.outside
            cells.append(f"{h.found} / {h.outside} / {100 * h.over_limit:.1f} % / {h.peak_in_windows:.2f}")
        cells.append(seasonal_profile(f))
        lines.append(f"| {f.name} | {len(windows[f'{CATEGORY}/{f.name}'])} | " + " | ".join(cells) + " |")
    n = sum(len(windows[f"{CATEGORY}/{f.name}"]) for f in files)
    lines.append(f"| all | {n} | " + " | ".join(f"{totals[d][0]} / {totals[d][1]}" for d in names) + " | |")
    return lines


def _grid(args: argparse.Namespace, files: list[NabFile], windows: dict[str, list], work: Path) -> None:
    """Each setting of the grid scored by NAB on the development file alone."""
    development = [f for f in files if f.name == DEVELOPMENT]
    detector, grid, describe = ((SEASONAL, SEASONAL_GRID, _describe_seasonal) if args.grid == "seasonal"
                                else (DETECTOR, GRID, _describe))
    print(f"Settings of {detector} searched on the development file ({DEVELOPMENT}) only: {len(grid)}")
    print("| settings | standard | reward_low_FP | reward_low_FN |\n|---|---|---|---|")
    for i, settings in enumerate(grid):
        r = run_nab(args.nab_repo, args.nab_python, development, windows,
                    {detector: _scores(development, detector, settings)}, ["null"], work / f"grid{i}")
        print(f"| {describe(settings)} | "
              + " | ".join(f"{r[detector][p]['normalised']:.2f}" for p in PROFILES) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.evaluate_nab", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder holding nab/ (see its README)")
    parser.add_argument("--nab-repo", type=Path, required=True, help="a checkout of numenta/NAB")
    parser.add_argument("--nab-python", default=sys.executable, help="the Python that runs NAB's run.py")
    parser.add_argument("--work", type=Path, help="scratch directory kept for inspection (default: a temporary one)")
    parser.add_argument("--grid", choices=("seasonal", "normal"),
                        help="search this detector's settings on the development file only")
    args = parser.parse_args(argv)
    try:
        files = load(args.data_dir / "nab")
        windows = json.loads((args.data_dir / "nab" / "labels" / "combined_windows.json").read_text())
        detectors = shipped_detectors(args.nab_repo)
        published = json.loads((args.nab_repo / "results" / "final_results.json").read_text())
    except (NabError, OSError) as exc:
        print(f"evaluate_nab: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="evaluate_nab.") as scratch:
        work = args.work or Path(scratch)
        try:
            if args.grid:
                _grid(args, files, windows, work)
                return 0
            ours = {DETECTOR: _scores(files, DETECTOR, CHOSEN), SEASONAL: _scores(files, SEASONAL, SEASONAL_CHOSEN)}
            raw = {DETECTOR: _scores(files, DETECTOR, NabSettings(CHOSEN.normal, 0)),
                   SEASONAL: _scores(files, SEASONAL, SeasonalNabSettings(SEASONAL_CHOSEN.seasonal, 0.0))}
            development = [f for f in files if f.name == DEVELOPMENT]
            dev = run_nab(args.nab_repo, args.nab_python, development, windows, ours, ["null"], work / "development")
            fixed = {held: {p: {"threshold": dev[d][p]["threshold"]} for p in PROFILES}
                     for d, held in ((DETECTOR, HELD_OUT), (SEASONAL, SEASONAL_HELD_OUT))}
            for d in (SEASONAL, DETECTOR):
                print(f"Thresholds NAB's optimize step picks for {d} on the development file alone: "
                      + ", ".join(f"{p} {dev[d][p]['threshold']:.6f}" for p in PROFILES))
            evaluation = [f for f in files if f.name != DEVELOPMENT]
            for i, (label, subset) in enumerate(((f"all {len(files)} {CATEGORY} files", files),
                                                 (f"the {len(evaluation)} evaluation files (development file left out)",
                                                  evaluation))):
                results = run_nab(args.nab_repo, args.nab_python, subset, windows,
                                  {**ours, HELD_OUT: ours[DETECTOR], SEASONAL_HELD_OUT: ours[SEASONAL]},
                                  detectors, work / f"run{i}", fixed)
                print("\n".join(_table(f"NAB scores (NAB's own optimize, score and normalize steps), {label}:",
                                        results, published)))
                if i == 0:
                    at = {d: results[d]["standard"]["threshold"] for d in ours}
                    print(f"\nOurs file by file at NAB's optimized standard thresholds on {label} ("
                          + ", ".join(f"{d} {t:.6f}" for d, t in at.items())
                          + "); over its limit and peak d: every reading kept, before the onset rule:\n")
                    print("\n".join(_hits_table(files, windows, ours, raw, at)))
        except (NabError, SeasonalError, OSError) as exc:
            print(f"evaluate_nab: {exc}", file=sys.stderr)
            return 1
        print(f"\nOurs: {SEASONAL}, hub.seasonal, {_describe_seasonal(SEASONAL_CHOSEN)}; "
              f"{DETECTOR}, hub.normal on the value, {_describe(CHOSEN)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
