"""Is a new report the same problem as an earlier one? Same place (a unit matches its own
building), same category, within the window, and texts similar enough.

Similarity: the overlap coefficient of the two texts' character bigram sets
(|A ∩ B| / min(|A|, |B|)), punctuation and spaces removed. A short report inside a longer
one ("路灯坏了" in "北门路灯坏了，晚上很黑") scores high, where Jaccard would punish the
longer text's extra words. Threshold and window chosen on training/data/duplicates_dev.jsonl
with ``python -m hub.residents.requests.duplicates_eval`` (docs/residents.md).
"""

import re
import unicodedata
from dataclasses import dataclass

from hub.residents.requests.places import same_place

THRESHOLD = 0.2
_NOISE = re.compile(r"[\W_]+", re.UNICODE)
# Where it is, not what: the place is compared on its own, and two reports at one place share
# its name whatever their problem.
_PLACE_WORDS = re.compile(r"[0-9一二三四五六七八九十]+\s*(号楼|单元|楼|层)|[东南西北]门|门口|小区|地下|车库|中心|花园|"
                          r"儿童乐园|乐园|楼道|楼梯间?|楼下")
# Words every report is full of, which say nothing about which problem it is.
_STOP = ("了", "的", "啊", "吧", "呢", "请", "麻烦", "一下", "谢谢", "你好", "您好", "物业", "师傅", "我们", "这里",
         "那里", "有人", "一直", "怎么", "还是", "已经")


@dataclass(frozen=True)
class Report:
    at: float  # epoch seconds
    place: str
    category: str
    text: str


def bigrams(text: str) -> frozenset[str]:
    t = unicodedata.normalize("NFKC", text).lower()
    t = _PLACE_WORDS.sub(" ", t)
    for word in _STOP:
        t = t.replace(word, " ")
    t = _NOISE.sub(" ", t)
    grams = set()
    for part in t.split():
        grams.update(part[i:i + 2] for i in range(len(part) - 1))
        if len(part) == 1:
            grams.add(part)
    return frozenset(grams)


def similarity(a: str, b: str) -> float:
    ga, gb = bigrams(a), bigrams(b)
    if not ga or not gb:
        return 0.0
    return len(ga & gb) / min(len(ga), len(gb))


def is_duplicate(new: Report, old: Report, *, window_s: float, threshold: float = THRESHOLD) -> bool:
    return (new.category == old.category and same_place(new.place, old.place)
            and 0 <= new.at - old.at <= window_s and similarity(new.text, old.text) >= threshold)


def best_match(new: Report, candidates: list[tuple[int, Report]], *, window_s: float,
               threshold: float = THRESHOLD) -> int | None:
    """The key of the most similar duplicate among ``candidates`` (key, report), or None."""
    best, best_score = None, -1.0
    for key, old in candidates:
        if is_duplicate(new, old, window_s=window_s, threshold=threshold):
            score = similarity(new.text, old.text)
            if score > best_score:
                best, best_score = key, score
    return best
