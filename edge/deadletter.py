"""The edge's local dead-letter file: raw readings it could not normalise, for a person to read."""

import base64
import json
import logging
import os
import time
from pathlib import Path

from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)


class DeadLetterFile:
    """JSON lines, rotated once at ``max_bytes`` (one previous file kept)."""

    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.count = 0
        self._log_throttle = LogThrottle()
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, source: str, reason: str, detail: str, raw: bytes) -> None:
        self.count += 1
        allowed, suppressed = self._log_throttle.allow(reason)
        if suppressed:
            log.warning("edge dead letter: %d more with reason=%s were not logged (all are in %s)",
                        suppressed, reason, self.path)
        if allowed:
            log.warning("edge dead letter: source=%s reason=%s detail=%s", source, reason, detail[:200])
        line = json.dumps({"at": time.time(), "source": source, "reason": reason, "detail": detail[:1000],
                           "raw_b64": base64.b64encode(raw[:65536]).decode()}, ensure_ascii=False)
        try:
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                os.replace(self.path, self.path.with_suffix(self.path.suffix + ".1"))
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:  # the count and the log line above still record it
            log.error("cannot write edge dead letter to %s: %s", self.path, exc)
