"""How well duplicate reports merge, on a labelled file (one JSON object per line:
{"id", "minutes", "place", "text", "group"}; the same group is the same problem).

The reports go in order of ``minutes`` through the intake's rule: each one joins the order of
its best duplicate among the earlier reports (``duplicates.best_match``: same place, same
category, within the window, similar text), or opens a new order. Printed: pairwise
precision, recall and F1 (a pair is "merged" when both reports are on one order) and the
number of work orders produced against the number of groups.

    python -m hub.residents.requests.duplicates_eval training/data/duplicates_dev.jsonl
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

from hub.residents.requests.duplicates import THRESHOLD, Report, best_match
from hub.residents.triage.keywords import KeywordTriage


def load(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows.append({"id": str(row["id"]), "minutes": float(row["minutes"]), "place": str(row["place"]),
                         "text": str(row["text"]), "group": str(row["group"])})
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}:{n}: not a report ({exc})") from None
    return sorted(rows, key=lambda r: r["minutes"])


def cluster(rows: list[dict], *, window_h: float, threshold: float, categories: list[str]) -> list[int]:
    """The order each report lands on (in ``rows``' order)."""
    orders: list[int] = []
    seen: list[tuple[int, Report]] = []
    for row, category in zip(rows, categories, strict=True):
        report = Report(row["minutes"] * 60, row["place"], category, row["text"])
        match = best_match(report, seen, window_s=window_h * 3600, threshold=threshold)
        order = orders[match] if match is not None else len(set(orders))
        seen.append((len(orders), report))
        orders.append(order)
    return orders


def score(rows: list[dict], orders: list[int]) -> dict[str, float]:
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(rows)), 2):
        same_group, same_order = rows[i]["group"] == rows[j]["group"], orders[i] == orders[j]
        tp += same_group and same_order
        fp += same_order and not same_group
        fn += same_group and not same_order
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "orders": len(set(orders)), "groups": len({row["group"] for row in rows}), "reports": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--window-h", type=float, default=3.0)
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--triage", choices=("keywords", "none"), default="keywords",
                    help="categories from the keyword triage (as the hub runs now), or all one category")
    args = ap.parse_args(argv)
    rows = load(args.file)
    categories = ([t.category for t in KeywordTriage().triage([r["text"] for r in rows])] if args.triage == "keywords"
                  else ["other"] * len(rows))
    s = score(rows, cluster(rows, window_h=args.window_h, threshold=args.threshold, categories=categories))
    print(f"{args.file}: {s['reports']} reports, {s['groups']} groups -> {s['orders']} work orders "
          f"(window {args.window_h:g} h, threshold {args.threshold:g}, triage {args.triage})")
    print(f"pairwise precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
