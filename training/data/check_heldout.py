"""Validate the held-out triage and duplicate-merging sets and print their counts.

Usage: python training/data/check_heldout.py   (exit status 1 on any problem)

Stdlib only. The sets are written by hand, independently of the training data;
this script checks their shape and the minimum sizes agreed for issue 17.
"""

import collections
import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
TRIAGE = HERE / "triage_heldout.jsonl"
DUPLICATES = HERE / "duplicates_heldout.jsonl"

CATEGORIES = ("repair", "sanitation", "safety", "traffic", "neighbour", "care", "services", "other")
URGENCIES = ("emergency", "urgent", "normal")
PLACE = re.compile(r"^(b[1-8](/u[1-9])?|area:(north-gate|garage-b2|playground|east-gate|garden))$")
TWO_DAYS = 2 * 24 * 60

MIN_TRIAGE = 480
MIN_PER_CATEGORY = 45
MIN_EMERGENCY = 60
MIN_URGENT = 60
MIN_HARD_NEGATIVE = 40
MIN_REPORTS = 150
MIN_GROUPS = 70


def read_jsonl(path, errors):
    """Yield (line number, object) for each line; record unreadable lines."""
    try:
        raw = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path.name}: cannot read as UTF-8: {exc}")
        return
    for number, line in enumerate(raw.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{path.name}:{number}: invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{path.name}:{number}: not a JSON object")
            continue
        yield number, obj


def check_triage(errors):
    rows = []
    seen = {}
    for number, obj in read_jsonl(TRIAGE, errors):
        where = f"{TRIAGE.name}:{number}"
        extra = set(obj) - {"text", "category", "urgency", "note"}
        if extra:
            errors.append(f"{where}: unknown fields {sorted(extra)}")
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{where}: text missing or empty")
            continue
        if obj.get("category") not in CATEGORIES:
            errors.append(f"{where}: category {obj.get('category')!r} not in {CATEGORIES}")
        if obj.get("urgency") not in URGENCIES:
            errors.append(f"{where}: urgency {obj.get('urgency')!r} not in {URGENCIES}")
        if "note" in obj and not isinstance(obj["note"], str):
            errors.append(f"{where}: note must be a string")
        key = re.sub(r"\s+", "", text)
        if key in seen:
            errors.append(f"{where}: duplicate text of line {seen[key]}")
        seen[key] = number
        rows.append(obj)

    by_category = collections.Counter(r.get("category") for r in rows)
    by_urgency = collections.Counter(r.get("urgency") for r in rows)
    by_both = collections.Counter((r.get("category"), r.get("urgency")) for r in rows)
    hard = sum("hard negative" in r.get("note", "") for r in rows)
    lengths = [len(r["text"]) for r in rows]

    print(f"triage: {len(rows)} messages, text length {min(lengths, default=0)}..{max(lengths, default=0)}")
    print(f"  {'category':<11}" + "".join(f"{u:>10}" for u in URGENCIES) + f"{'total':>8}")
    for c in CATEGORIES:
        print(f"  {c:<11}" + "".join(f"{by_both[(c, u)]:>10}" for u in URGENCIES) + f"{by_category[c]:>8}")
    print(f"  {'total':<11}" + "".join(f"{by_urgency[u]:>10}" for u in URGENCIES) + f"{len(rows):>8}")
    print(f"  hard negatives (note contains 'hard negative'): {hard}")

    if len(rows) < MIN_TRIAGE:
        errors.append(f"triage: {len(rows)} messages < {MIN_TRIAGE}")
    for c in CATEGORIES:
        if by_category[c] < MIN_PER_CATEGORY:
            errors.append(f"triage: category {c} has {by_category[c]} < {MIN_PER_CATEGORY}")
    if by_urgency["emergency"] < MIN_EMERGENCY:
        errors.append(f"triage: {by_urgency['emergency']} emergencies < {MIN_EMERGENCY}")
    if by_urgency["urgent"] < MIN_URGENT:
        errors.append(f"triage: {by_urgency['urgent']} urgent < {MIN_URGENT}")
    if hard < MIN_HARD_NEGATIVE:
        errors.append(f"triage: {hard} hard negatives < {MIN_HARD_NEGATIVE}")
    for r in rows:
        if "hard negative" in r.get("note", "") and r.get("urgency") == "emergency":
            errors.append(f"triage: hard negative labelled emergency: {r['text']}")


def check_duplicates(errors):
    rows = []
    ids = set()
    texts = {}
    for number, obj in read_jsonl(DUPLICATES, errors):
        where = f"{DUPLICATES.name}:{number}"
        if set(obj) != {"id", "minutes", "place", "text", "group"}:
            errors.append(f"{where}: fields must be id, minutes, place, text, group; got {sorted(obj)}")
            continue
        if not re.fullmatch(r"d\d{3,}", str(obj["id"])) or obj["id"] in ids:
            errors.append(f"{where}: bad or repeated id {obj['id']!r}")
        ids.add(obj["id"])
        if not isinstance(obj["minutes"], int) or isinstance(obj["minutes"], bool) or obj["minutes"] < 0:
            errors.append(f"{where}: minutes must be a non-negative integer")
            continue
        if not isinstance(obj["place"], str) or not PLACE.match(obj["place"]):
            errors.append(f"{where}: unknown place {obj['place']!r}")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            errors.append(f"{where}: text missing or empty")
            continue
        if not re.fullmatch(r"g\d{2,}", str(obj["group"])):
            errors.append(f"{where}: bad group {obj['group']!r}")
        if obj["text"] in texts:
            errors.append(f"{where}: duplicate text of line {texts[obj['text']]}")
        texts[obj["text"]] = number
        rows.append(obj)

    minutes = [r["minutes"] for r in rows]
    if minutes != sorted(minutes):
        errors.append("duplicates: reports are not in time order")
    groups = collections.defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    sizes = collections.Counter(len(g) for g in groups.values())
    for name, members in groups.items():
        span = max(m["minutes"] for m in members) - min(m["minutes"] for m in members)
        if span > TWO_DAYS:
            errors.append(f"duplicates: group {name} spans {span} min > 2 days")
        buildings = {m["place"].split("/")[0] for m in members}
        if len(buildings) > 1:
            errors.append(f"duplicates: group {name} spans places {sorted(buildings)}")
    by_day = collections.Counter(m // 1440 for m in minutes)
    mixed = sum(1 for g in groups.values() if len({m["place"] for m in g}) > 1)

    print(f"duplicates: {len(rows)} reports in {len(groups)} groups, minutes 0..{max(minutes, default=0)}")
    print("  group sizes: " + ", ".join(f"{k} reports x{v}" for k, v in sorted(sizes.items())))
    print("  reports per day: " + ", ".join(f"day {d}: {n}" for d, n in sorted(by_day.items())))
    print(f"  groups reported at both a building and its unit (or two units): {mixed}")

    if len(rows) < MIN_REPORTS:
        errors.append(f"duplicates: {len(rows)} reports < {MIN_REPORTS}")
    if len(groups) < MIN_GROUPS:
        errors.append(f"duplicates: {len(groups)} groups < {MIN_GROUPS}")


def main():
    errors = []
    check_triage(errors)
    check_duplicates(errors)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
