"""Scores a triager on a labelled JSON-lines file: per-category precision, recall and F1,
macro-F1, and emergency recall and precision.

    python -m hub.residents.triage.evaluate training/data/triage_heldout.jsonl

Each line holds ``text``, ``category`` and ``urgency``. The held-out file is for reporting
only: nothing is chosen on it.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.categories import TRIAGE_CATEGORIES
from hub.residents.triage import URGENCIES, Triager
from hub.residents.triage.keywords import KeywordTriage


@dataclass(frozen=True)
class Labelled:
    text: str
    category: str
    urgency: str


@dataclass(frozen=True)
class Scores:
    per_category: dict[str, tuple[float, float, float]]  # precision, recall, F1
    macro_f1: float
    emergency_recall: float
    emergency_precision: float
    emergencies: int  # labelled
    flagged: int  # called emergency by the triager


def read_labelled(path: Path) -> list[Labelled]:
    """The file's rows; a line with a field missing or a label outside the lists is an error
    that names the line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        doc = json.loads(line)
        if doc.get("category") not in TRIAGE_CATEGORIES or doc.get("urgency") not in URGENCIES:
            raise ValueError(f"{path}:{number}: category {doc.get('category')!r} or urgency "
                             f"{doc.get('urgency')!r} is not one of the triage labels")
        rows.append(Labelled(str(doc["text"]), doc["category"], doc["urgency"]))
    return rows


def _prf(tp: int, predicted: int, actual: int) -> tuple[float, float, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(triager: Triager, rows: Sequence[Labelled]) -> Scores:
    out = triager.triage([r.text for r in rows])
    per = {}
    for c in TRIAGE_CATEGORIES:
        tp = sum(o.category == c == r.category for o, r in zip(out, rows, strict=True))
        per[c] = _prf(tp, sum(o.category == c for o in out), sum(r.category == c for r in rows))
    tp = sum(o.urgency == "emergency" == r.urgency for o, r in zip(out, rows, strict=True))
    flagged = sum(o.urgency == "emergency" for o in out)
    emergencies = sum(r.urgency == "emergency" for r in rows)
    precision, recall, _ = _prf(tp, flagged, emergencies)
    return Scores(per, sum(f for _, _, f in per.values()) / len(per), recall, precision, emergencies, flagged)


def table(name: str, s: Scores) -> str:
    lines = [f"{name}: macro-F1 {s.macro_f1:.3f}, emergency recall {s.emergency_recall:.3f} "
             f"(of {s.emergencies}), precision {s.emergency_precision:.3f} (of {s.flagged} flagged)"]
    lines += [f"  {c:<11} P {p:.2f}  R {r:.2f}  F1 {f:.2f}" for c, (p, r, f) in s.per_category.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    rows = read_labelled(args.file)
    print(f"{args.file}: {len(rows)} messages")
    print(table("keywords", score(KeywordTriage(), rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
