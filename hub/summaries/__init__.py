"""Community summaries: what leaves the hub for the bridge and the city.

- ``build.py``: the summary of a window from the counts (pure functions, no I/O), its
  revisions and roll-ups.
- ``store.py``: :class:`SummaryStore`, the summaries kept until published and for revision.
- ``interval.py``: :class:`Summaries`, the component: one summary per interval, published.
- ``revisions.py``: :class:`Revisions`, late readings' revisions and the roll-ups.
"""

from hub.summaries.interval import Summaries
from hub.summaries.store import SummaryStore

__all__ = ["Summaries", "SummaryStore"]
