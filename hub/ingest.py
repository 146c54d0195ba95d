"""Validate and route every message the hub receives. No I/O here: the ingest writer
(:mod:`hub.writer`) flushes what this collects to the store.

Any message that does not satisfy the contract becomes a dead letter with its topic,
reason, time and raw bytes; nothing raises out of :meth:`Ingestor.handle`.

About 400 lines: the checks of every message kind and the dedup window stay together, on
the hot path, as one unit (threshold checks and rebirth requests are in hub/thresholds.py
and hub/rebirth.py).
"""

import hashlib
import json
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from contract import topics
from contract.classes import CATALOG
from contract.codec import MAX_BACKLOG_BYTES, DecodeError, decode
from contract.fastcodec import FastTelemetry, decode_telemetry, unpack_backlog
from contract.messages import (
    BACKLOG_KINDS,
    Ack,
    Birth,
    Death,
    Event,
    QUALITY_LEVELS,
    GatewayHealth,
    Telemetry,
)
from contract.topics import Topic, TopicError, TopicKind
from hub.metrics import HubMetrics
from hub.normals import NormalDetectors
from hub.patterns import PatternDetector
from hub.rebirth import RunWatch
from hub.registry import Registry
from hub.store import DeadLetter, TelemetryRow
from hub.thresholds import ThresholdWatch
from hub.windows import Windows
from hub.workorders import REQUEST_CATEGORIES
from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)

DEDUP_WINDOW = 100_000  # recent (gateway, boot, seq) remembered per gateway run
RUNS_REMEMBERED = 4
TOPICS_CACHED = 50_000  # agent runs per gateway whose sequence numbers are remembered


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Pending:
    """Rows collected since the last flush."""

    telemetry: list[TelemetryRow] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    acks: list[tuple[str, str, float, str, str]] = field(default_factory=list)
    births: list[tuple[str, str, str, float]] = field(default_factory=list)
    # Threshold crossings: (ts, device, metric, value, bound "low"/"high", limit)
    crossings: list[tuple[float, str, str, float, str, float]] = field(default_factory=list)
    downlinks: list[bytes] = field(default_factory=list)  # signed city items (SignedItem JSON)
    rebirths: list[tuple[str, str, str]] = field(default_factory=list)  # (gateway, reason, detail) to ask

    def __len__(self) -> int:
        return (len(self.telemetry) + len(self.events) + len(self.dead) + len(self.acks) + len(self.births)
                + len(self.crossings) + len(self.downlinks) + len(self.rebirths))


@dataclass(frozen=True, slots=True)
class IntervalReadings:
    """What ingest gathered over one summary interval."""

    stats: dict[tuple[str, str], list[float]]  # (device, metric) -> [n, sum, min, max]
    readings: dict[str, int]  # by device
    events: dict[str, int]  # by event
    requests: dict[str, int]  # residents' requests, by category
    quality: dict[str, int]  # points, by quality level


class _SeqWindow:
    """Recently seen sequence numbers of one gateway run, bounded."""

    def __init__(self, size: int) -> None:
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self._size = size

    def __contains__(self, seq: int) -> bool:
        return seq in self._seen

    def add(self, seq: int) -> bool:
        """Record ``seq`` (of a message accepted); False if it was already seen."""
        if seq in self._seen:
            return False
        self._seen.add(seq)
        self._order.append(seq)
        if len(self._order) > self._size:
            self._seen.discard(self._order.popleft())
        return True


class Ingestor:
    def __init__(self, registry: Registry, windows: Windows, metrics: HubMetrics, *, max_payload_bytes: int,
                 rebirth_seq_gap: int = 1000, rebirth_min_interval_s: float = 60.0) -> None:
        self.registry = registry
        # Readings from an agent run never seen born, or a live sequence number that jumps:
        # a rebirth is asked (hub.rebirth); the device twin sends the command.
        self.runs = RunWatch(registry, metrics, seq_gap=rebirth_seq_gap, min_interval_s=rebirth_min_interval_s)
        self.windows = windows
        self.patterns: dict[str, PatternDetector] = {}  # by device class
        self.normals: NormalDetectors | None = None  # per-device learned normals: an append per reading
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.community = registry.community.id
        self.pending = Pending()
        self._log_throttle = LogThrottle()
        self._seqs: dict[str, OrderedDict[str, _SeqWindow]] = {}  # gateway -> boot -> window
        self._topics: dict[str, Topic] = {}  # parsed topics, by topic string
        self._received: dict[str, Any] = {}  # prometheus children, by message kind
        # Per-interval accumulators for the community summary: (device, metric) -> [n, sum, min, max]
        self.interval_stats: dict[tuple[str, str], list[float]] = {}
        self.interval_readings: dict[str, int] = {}
        self.interval_quality: dict[str, int] = {}  # points read, by quality level (good, uncertain, bad)
        self.interval_events: dict[str, int] = {}
        self.interval_requests: dict[str, int] = {}  # residents' requests (kiosk service_request), by category
        # Late readings (an edge's replay after an outage): a reading older than late_before
        # belongs to a window already summarised, and is gathered per window (its aligned
        # start) for a revision of that window's summary; one older than revise_after is
        # stored but no longer revises anything (counted as late_unsummarised).
        self.late_before = float("-inf")
        self.revise_after = float("-inf")
        self.summary_step = 60.0
        self.late_stats: dict[float, dict[tuple[str, str], list[float]]] = {}
        self.late_readings: dict[float, dict[str, int]] = {}
        self.late_quality: dict[float, dict[str, int]] = {}
        # Desired thresholds per device (set through the twin), checked on live readings.
        self.thresholds = ThresholdWatch()

    def take(self) -> Pending:
        taken, self.pending = self.pending, Pending()
        return taken

    def handle(self, topic: str, payload: bytes, received_at: float | None = None) -> None:
        received_at = received_at or time.time()
        try:
            self._route(topic, payload, received_at)
        except Rejected as exc:
            self._dead(topic, payload, received_at, exc.reason, exc.detail)
        except Exception as exc:  # a bug must not stop ingest; keep the message for a person
            log.exception("unexpected error on topic %s", topic)
            self._dead(topic, payload, received_at, "internal-error", repr(exc))

    def _dead(self, topic: str, payload: bytes, at: float, reason: str, detail: str) -> None:
        self.metrics.dead_letter(reason)
        allowed, suppressed = self._log_throttle.allow(reason)
        if suppressed:
            log.warning("dead letter: %d more with reason=%s were not logged (all are stored)", suppressed, reason)
        if allowed:
            log.warning("dead letter: topic=%s reason=%s detail=%s size=%d", topic, reason, detail[:200], len(payload))
        self.pending.dead.append(DeadLetter(at, topic, reason, detail[:1000], payload[: self._limit(topic)], len(payload),
                                            hashlib.sha256(payload).hexdigest()))

    def _limit(self, topic: str) -> int:
        """Largest payload accepted (and kept in a dead letter) on ``topic``."""
        big = topic.endswith(("/" + TopicKind.BACKLOG, "/" + TopicKind.DOWNLINK))  # a model update is large too
        return MAX_BACKLOG_BYTES if big else self.max_payload_bytes

    def _parse(self, topic: str) -> Topic:
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = topics.parse(topic)
            if len(self._topics) >= TOPICS_CACHED:  # devices publish on a few topics each: cache them
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def _route(self, topic: str, payload: bytes, at: float) -> None:
        limit = self._limit(topic)
        if len(payload) > limit:
            raise Rejected("oversize", f"{len(payload)} bytes > {limit}")
        try:
            parsed = self._parse(topic)
        except TopicError as exc:
            raise Rejected("bad-topic", exc.reason) from None
        if parsed.community != self.community:
            raise Rejected("foreign-community", parsed.community)
        if parsed.kind in (TopicKind.COMMAND, TopicKind.SUMMARY, TopicKind.ALERT, TopicKind.DOWNLINK_ACK):
            return  # published by the hub itself
        if parsed.kind is TopicKind.DOWNLINK:  # a city item, from the bridge: verified and applied at the flush
            self.pending.downlinks.append(payload)
            return
        counter = self._received.get(parsed.kind)
        if counter is None:
            counter = self._received[parsed.kind] = self.metrics.received.labels(parsed.kind)
        counter.inc()
        self.metrics.count(f"received_{parsed.kind}")
        if parsed.gateway not in self.registry.gateways:
            raise Rejected("unknown-gateway", str(parsed.gateway))
        if parsed.kind is TopicKind.BACKLOG:
            self._backlog(parsed, payload, at)
            return
        try:
            if parsed.kind is TopicKind.TELEMETRY:
                message: Any = decode_telemetry(payload, max_bytes=self.max_payload_bytes)
            else:
                message = decode(parsed.kind, payload, max_bytes=self.max_payload_bytes)
        except DecodeError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        if parsed.kind is TopicKind.TELEMETRY:
            # Readings of an agent run a gateway announced, told apart from any other
            # publisher's (a reading typed by hand, a device misconfigured elsewhere).
            origin = "announced" if (parsed.gateway, message.boot) in self.registry.announced else "unannounced"
            try:
                self._telemetry(parsed, message, origin)
            except Rejected:
                self.metrics.count(f"dead_{origin}_telemetry")
                raise
        elif isinstance(message, Event):
            self._event(parsed, message)
        elif isinstance(message, Birth):
            self._birth(parsed, message, at)
        elif isinstance(message, Death):
            if self.registry.death(str(parsed.gateway), message.boot, at, clean=message.clean):
                log.warning("gateway %s offline (clean=%s)", parsed.gateway, message.clean)
        elif isinstance(message, Ack):
            self.pending.acks.append((message.id, str(parsed.gateway), at, message.result, message.reason))
        elif isinstance(message, GatewayHealth):
            self.registry.gateways[str(parsed.gateway)].health = message.model_dump(exclude={"v"})

    def _backlog(self, parsed: Topic, payload: bytes, at: float) -> None:
        """Handle each spooled message of a backlog as if it had arrived alone; a bad item is a
        dead letter of its own (its topic, its bytes), and does not cost the others."""
        try:
            items = unpack_backlog(payload)
        except DecodeError as exc:
            raise Rejected(exc.reason, exc.detail) from None
        self.metrics.count("backlog_items", len(items))
        for topic, raw in items:
            try:
                item = self._parse(topic)
            except TopicError as exc:
                self._dead(topic, raw, at, "backlog-item-topic", exc.reason)
                continue
            if item.community != parsed.community or item.gateway != parsed.gateway or item.kind not in BACKLOG_KINDS:
                self._dead(topic, raw, at, "backlog-item-topic",
                           f"a backlog of {parsed.gateway} carries only its own {', '.join(sorted(BACKLOG_KINDS))}")
                continue
            self.handle(topic, raw, at)

    def _check_device(self, parsed: Topic, device: str, seq: int, boot: str) -> "_SeqWindow":
        """Check the message's device; raise _Duplicate for a seq already accepted. Returns the
        run's window, to record ``seq`` in only once the message is accepted: a rejected one
        must not use up its seq, or its corrected resend would be dropped as a repeat."""
        if device != parsed.device:
            raise Rejected("topic-payload-mismatch", f"topic device {parsed.device!r}, payload device {device!r}")
        state = self.registry.devices.get(device)
        if state is None:
            raise Rejected("unknown-device", device)
        if state.gateway != parsed.gateway:
            raise Rejected("wrong-gateway", f"{device} belongs to {state.gateway}, not {parsed.gateway}")
        window = self._seq_window(str(parsed.gateway), boot)
        if seq in window:
            raise _Duplicate
        return window

    def _seq_window(self, gateway: str, boot: str) -> _SeqWindow:
        """The window of one agent run; only the latest few runs of a gateway are kept."""
        runs = self._seqs.setdefault(gateway, OrderedDict())
        window = runs.get(boot)
        if window is None:
            window = runs[boot] = _SeqWindow(DEDUP_WINDOW)
            while len(runs) > RUNS_REMEMBERED:
                runs.popitem(last=False)
        return window

    def _telemetry(self, parsed: Topic, msg: Telemetry | FastTelemetry, origin: str) -> None:
        try:
            seen = self._check_device(parsed, msg.device, msg.seq, msg.boot)
        except _Duplicate:
            self.metrics.duplicates.inc()
            self.metrics.count("duplicates")
            return
        state = self.registry.devices[msg.device]
        spec = CATALOG[state.device_class]
        quality = msg.quality
        scored = set()
        bad: set[str] = set()  # stored and shown, left out of windows, scores, rules and aggregates
        for name, value in msg.metrics.items():
            metric = spec.metric(name)
            if metric is None:
                raise Rejected("unknown-metric", f"{state.device_class} has no metric {name!r}")
            if quality and QUALITY_LEVELS[quality.get(name, "good")] == "bad":
                bad.add(name)  # the sender says so: its value may be anything finite
            elif not metric.low <= value <= metric.high:
                raise Rejected("out-of-range", f"{name}={value} outside [{metric.low}, {metric.high}]")
            if metric.scored:
                scored.add(name)
        seen.add(msg.seq)  # accepted: from here on, a message with this seq is a repeat
        self.metrics.count(f"stored_{origin}")
        gateway = str(parsed.gateway)
        self.runs.watch(gateway, msg.boot, msg.seq, msg.hist, origin == "announced", self.pending.rebirths)
        self.pending.telemetry.append(
            TelemetryRow(msg.ts, msg.device, gateway, msg.seq, msg.hist, tuple(msg.metrics.items()), msg.boot, origin,
                         tuple((k, q) for k, q in quality.items() if q != "good") if quality else ()))
        self.registry.seen(msg.device, msg.ts, dict(msg.metrics), quality)
        usable = {k: v for k, v in msg.metrics.items() if k not in bad} if bad else msg.metrics
        detector = self.patterns.get(state.device_class)
        if detector is not None and not msg.hist and usable:
            detector.add(msg.device, msg.ts, usable)
        if self.normals is not None and not msg.hist and usable:
            self.normals.add(msg.device, state.device_class, msg.ts, usable)
        stats, readings, levels = self.interval_stats, self.interval_readings, self.interval_quality
        if msg.ts < self.late_before:
            stats, readings, levels = self._late_window(msg.ts)
        readings[msg.device] = readings.get(msg.device, 0) + 1
        if quality:
            self._count_quality(levels, msg.metrics, quality)
        else:
            levels["good"] = levels.get("good", 0) + len(msg.metrics)
        for name, value in usable.items():
            acc = stats.get((msg.device, name))
            if acc is None:
                stats[(msg.device, name)] = [1, value, value, value]
            else:
                acc[0] += 1
                acc[1] += value
                acc[2] = min(acc[2], value)
                acc[3] = max(acc[3], value)
            if not msg.hist and name in scored:
                self.windows.add(msg.device, name, msg.ts, value)
        limits = self.thresholds.limits.get(msg.device)
        if limits and not msg.hist and usable:  # history is stored, never alerted on
            self.thresholds.check(msg.device, msg.ts, usable, limits, self.pending.crossings)

    def _count_quality(self, levels: dict[str, int], metrics: Any, quality: dict[str, str]) -> None:
        """Count each point of a reading by its quality level: the values it carries, and the
        points it names as not read (comm_error, absent from its metrics). An all-good
        reading (no quality) is counted inline by the caller, on the hot path."""
        for name, reason in quality.items():
            if name in metrics or reason != "good":
                level = QUALITY_LEVELS[reason]
                levels[level] = levels.get(level, 0) + 1
                if level != "good":
                    self.metrics.count(f"points_{level}")
                    self.metrics.not_good.labels(level, reason).inc()
        good = sum(1 for name in metrics if name not in quality)
        levels["good"] = levels.get("good", 0) + good

    def _late_window(self, ts: float) -> tuple[dict[tuple[str, str], list[float]], dict[str, int], dict[str, int]]:
        if ts < self.revise_after:
            self.metrics.count("late_unsummarised")
            return {}, {}, {}
        self.metrics.count("late_readings")
        window = math.floor(ts / self.summary_step) * self.summary_step
        return (self.late_stats.setdefault(window, {}), self.late_readings.setdefault(window, {}),
                self.late_quality.setdefault(window, {}))

    def take_interval(self) -> "IntervalReadings":
        """What the interval that ends now gathered, for its summary; a new interval starts."""
        taken = IntervalReadings(self.interval_stats, self.interval_readings, self.interval_events,
                                 self.interval_requests, self.interval_quality)
        self.interval_stats, self.interval_readings, self.interval_events, self.interval_requests = {}, {}, {}, {}
        self.interval_quality = {}
        return taken

    def set_late_bounds(self, step: float, late_before: float, revise_after: float) -> None:
        """Readings older than ``late_before`` belong to a summarised window of ``step`` seconds
        and are gathered for its revision; those older than ``revise_after`` revise nothing."""
        self.summary_step, self.late_before, self.revise_after = step, late_before, revise_after

    def take_late(self) -> list[tuple[float, dict[tuple[str, str], list[float]], dict[str, int], dict[str, int]]]:
        """The late readings gathered since the last call, per window, oldest first:
        (window start, statistics, readings by device, points by quality level)."""
        late = [(w, self.late_stats[w], self.late_readings[w], self.late_quality.get(w, {}))
                for w in sorted(self.late_stats)]
        self.late_stats, self.late_readings, self.late_quality = {}, {}, {}
        return late

    def _event(self, parsed: Topic, msg: Event) -> None:
        try:
            seen = self._check_device(parsed, msg.device, msg.seq, msg.boot)
        except _Duplicate:
            self.metrics.duplicates.inc()
            return
        seen.add(msg.seq)
        gateway = str(parsed.gateway)
        self.runs.watch(gateway, msg.boot, msg.seq, False, (gateway, msg.boot) in self.registry.announced,
                        self.pending.rebirths)
        self.pending.events.append((msg.ts, msg.device, str(parsed.gateway), msg.event, msg.severity,
                                    json.dumps(msg.data, ensure_ascii=False), msg.boot, msg.seq))
        self.registry.seen(msg.device, msg.ts, {})
        self.interval_events[msg.event] = self.interval_events.get(msg.event, 0) + 1
        if msg.event == "service_request":
            # Only a known category is counted by name: whatever else a kiosk put there (free
            # text, a name) must not reach a summary.
            category = msg.data.get("category")
            category = category if isinstance(category, str) and category in REQUEST_CATEGORIES else "other"
            self.interval_requests[category] = self.interval_requests.get(category, 0) + 1

    def _birth(self, parsed: Topic, msg: Birth, at: float) -> None:
        gateway = str(parsed.gateway)
        self.registry.birth(gateway, msg.boot, msg.software, at)
        self.pending.births.append((gateway, msg.boot, msg.software, at))
        # Devices an agent reads from its device profiles (config/devices/*.toml) need not be
        # listed in the community configuration: the gateway's birth announces them.
        adopted = [d.id for d in msg.devices if self.registry.adopt(gateway, d.id, d.device_class)]
        if adopted:
            log.info("gateway %s announced %d devices not in the community configuration: %s", gateway,
                     len(adopted), ", ".join(sorted(adopted)[:10]) + (" ..." if len(adopted) > 10 else ""))
        log.info("gateway %s online (boot %s, %d devices)", gateway, msg.boot, len(msg.devices))


class _Duplicate(Exception):
    pass
