"""Triage of residents' requests: which category a message is, how urgent, how sure, and why.

One interface, :class:`Triager`, with two implementations:

- the keyword baseline (:mod:`.keywords`), the simple rule a reviewer compares against;
- the trained Chinese text model, run through onnxruntime (:mod:`.model`).

``midbrain triage`` (stdin to JSON lines) and the hub's intake call the same component.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.categories import CATEGORIES, TRIAGE_CATEGORIES

URGENCIES = ("emergency", "urgent", "normal")  # life or property at immediate risk / today / in its SLA


@dataclass(frozen=True)
class Triage:
    """The triage of one message."""

    category: str  # one of TRIAGE_CATEGORIES
    urgency: str  # one of URGENCIES
    confidence: float  # 0..1: the lower of the category's and the urgency's probability
    reason: tuple[str, ...]  # the words (character n-grams or keywords) that decided, strongest first

    def as_json(self) -> dict[str, Any]:
        category = CATEGORIES[self.category]
        return {"category": self.category, "category_zh": category.label_zh, "category_en": category.label_en,
                "urgency": self.urgency, "confidence": round(self.confidence, 4), "reason": list(self.reason)}


class Triager(Protocol):
    """Triages messages in order; never raises on odd text (empty, emoji, very long)."""

    name: str

    def triage(self, texts: Sequence[str]) -> list[Triage]: ...


__all__ = ["TRIAGE_CATEGORIES", "URGENCIES", "Triage", "Triager"]
