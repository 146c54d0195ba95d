"""The edge's disk spool: what the hub's broker could not take yet, in order, on disk.

Layout: a directory of segment files ``seg-<n>.log`` and a ``cursor.json`` naming the
first record not yet acknowledged by the broker. Each record::

    u32 length | u32 crc32(body) | f64 enqueued-at | body = u16 topic length, topic, payload

Bounds: ``max_bytes`` (whole segments are dropped or new records refused, by
``full_policy``) and ``max_age_s`` (segments whose newest record is older are dropped).
Every drop is counted. ``fsync``: ``always`` (each append), ``interval`` (at most every
``fsync_interval_s``), ``never`` (leave it to the kernel). A torn record at the end of
the last segment (power cut mid-write) is cut off at start and counted as ``torn``.
"""

import json
import logging
import os
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<IId")
_TOPIC = struct.Struct("<H")
FullPolicy = Literal["drop_oldest", "refuse_newest"]
FsyncPolicy = Literal["always", "interval", "never"]


@dataclass
class _Segment:
    number: int
    path: Path
    records: int = 0
    size: int = 0
    newest: float = 0.0


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    after: Position  # where the next record starts: commit this once the record is acknowledged
    topic: str
    payload: bytes
    enqueued_at: float


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int = 256 * 1024 * 1024, max_age_s: float = 7 * 86400,
                 segment_bytes: int = 8 * 1024 * 1024, full_policy: FullPolicy = "drop_oldest",
                 fsync: FsyncPolicy = "interval", fsync_interval_s: float = 1.0) -> None:
        if segment_bytes > max_bytes:
            raise ValueError("segment_bytes must not exceed max_bytes")
        self.dir = directory
        self.max_bytes, self.max_age_s, self.segment_bytes = max_bytes, max_age_s, segment_bytes
        self.full_policy, self.fsync, self.fsync_interval_s = full_policy, fsync, fsync_interval_s
        self.counters = {"appended": 0, "acknowledged": 0, "dropped_full": 0, "refused_full": 0, "dropped_age": 0,
                         "torn": 0, "corrupt": 0}
        self.dir.mkdir(parents=True, exist_ok=True)
        self._segments: deque[_Segment] = deque()
        self._cursor = Position(0, 0)
        self._head = Position(0, 0)  # read position, ahead of the cursor by what is in flight
        self._fd = -1
        self._last_sync = 0.0
        self._cursor_dirty = False
        self._read_fd: tuple[int, int] | None = None  # (segment number, fd)
        self._open()

    # -- state -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Records not yet acknowledged (in flight or waiting)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def oldest_age_s(self, now: float | None = None) -> float:
        rec = self._peek_time(self._cursor)
        return 0.0 if rec is None else max(0.0, (now or time.time()) - rec)

    def stats(self) -> dict[str, float]:
        return {**self.counters, "depth": self.depth, "bytes": self.size_bytes,
                "oldest_age_s": round(self.oldest_age_s(), 1)}

    # -- open / recover ------------------------------------------------------------------

    def _open(self) -> None:
        for path in sorted(self.dir.glob("seg-*.log")):
            seg = _Segment(int(path.stem[4:]), path)
            self._scan(seg, last=False)
            self._segments.append(seg)
        if self._segments:
            self._scan(self._segments[-1], last=True)
        cursor_file = self.dir / "cursor.json"
        if cursor_file.exists():
            try:
                doc = json.loads(cursor_file.read_text())
                self._cursor = Position(int(doc["segment"]), int(doc["offset"]))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("spool %s: cursor unreadable (%s); replaying from the oldest record", self.dir, exc)
                self._cursor = Position(0, 0)
        if self._segments and self._cursor.segment < self._segments[0].number:
            self._cursor = Position(self._segments[0].number, 0)
        if not self._segments:
            self._segments.append(_Segment(max(1, self._cursor.segment), self.dir / f"seg-{max(1, self._cursor.segment):012d}.log"))
            self._cursor = Position(self._segments[0].number, 0)
        self._head = self._cursor
        self._depth = sum(s.records for s in self._segments) - self._records_before(self._cursor)
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._drop_acknowledged_segments()

    def _scan(self, seg: _Segment, *, last: bool) -> None:
        """Count a segment's records; cut a torn tail off the last segment."""
        seg.records, seg.size, seg.newest = 0, 0, 0.0
        with open(seg.path, "rb") as f:
            data = f.read()
        offset = 0
        while offset + _HEAD.size <= len(data):
            length, crc, ts = _HEAD.unpack_from(data, offset)
            body = data[offset + _HEAD.size: offset + _HEAD.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            offset += _HEAD.size + length
            seg.records += 1
            seg.newest = ts
        seg.size = offset
        if offset < len(data):
            if last:
                self.counters["torn"] += 1
                log.warning("spool %s: cut a torn record off %s (%d bytes)", self.dir, seg.path.name, len(data) - offset)
                os.truncate(seg.path, offset)
            else:
                self.counters["corrupt"] += 1
                log.error("spool %s: %s is corrupt after %d records; the rest of it is skipped",
                          self.dir, seg.path.name, seg.records)

    # -- append ------------------------------------------------------------------------

    def append(self, topic: str, payload: bytes, now: float | None = None) -> bool:
        """Add a record; False if the spool is full and the policy refuses the newest."""
        now = time.time() if now is None else now
        t = topic.encode()
        body = _TOPIC.pack(len(t)) + t + payload
        record = _HEAD.pack(len(body), zlib.crc32(body), now) + body
        self.expire(now)
        if not self._make_room(len(record)):
            self.counters["refused_full"] += 1
            return False
        seg = self._segments[-1]
        if seg.size and seg.size + len(record) > self.segment_bytes:
            seg = self._roll()
        os.write(self._fd, record)
        seg.records += 1
        seg.size += len(record)
        seg.newest = now
        self._depth += 1
        self.counters["appended"] += 1
        if self.fsync == "always" or (self.fsync == "interval" and now - self._last_sync >= self.fsync_interval_s):
            os.fsync(self._fd)
            self._last_sync = now
        return True

    def _roll(self) -> _Segment:
        if self.fsync != "never":
            os.fsync(self._fd)
        os.close(self._fd)
        n = self._segments[-1].number + 1
        seg = _Segment(n, self.dir / f"seg-{n:012d}.log")
        self._segments.append(seg)
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        return seg

    def _make_room(self, needed: int) -> bool:
        while self.size_bytes + needed > self.max_bytes:
            if self.full_policy == "refuse_newest" or len(self._segments) == 1:
                return False
            self._drop_oldest_segment("dropped_full")
        return True

    def _drop_oldest_segment(self, counter: str) -> None:
        """Delete the oldest segment (never the last one); count what it held unacknowledged."""
        seg = self._segments.popleft()
        unacked = 0
        if self._cursor.segment <= seg.number:
            acked = self._records_in(seg, self._cursor) if self._cursor.segment == seg.number else 0
            unacked = seg.records - acked
            self._cursor = Position(self._segments[0].number, 0)
            self._cursor_dirty = True
        if self._head < self._cursor:
            self._head = self._cursor
        self._depth -= unacked
        self.counters[counter] += unacked
        if unacked:
            log.warning("spool %s: %d unsent records dropped (%s)", self.dir, unacked, counter)
        self._close_reader(seg.number)
        seg.path.unlink(missing_ok=True)

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        while len(self._segments) > 1 and self._segments[0].newest and now - self._segments[0].newest > self.max_age_s:
            self._drop_oldest_segment("dropped_age")
        only = self._segments[0]
        if len(self._segments) == 1 and only.newest and now - only.newest > self.max_age_s and only.records:
            self._roll()
            self._drop_oldest_segment("dropped_age")

    # -- read / acknowledge ----------------------------------------------------------------

    def read(self, limit: int) -> list[Record]:
        """Up to ``limit`` records from the read head (which then moves past them)."""
        out: list[Record] = []
        while len(out) < limit:
            seg = self._segment(self._head.segment)
            if seg is None:
                break
            if self._head.offset >= seg.size:
                nxt = self._segment_after(seg.number)
                if nxt is None:
                    break
                self._head = Position(nxt.number, 0)
                continue
            fd = self._reader(seg)
            want = max(64 * 1024, (limit - len(out)) * 512)  # enough for typical records, not the whole segment
            chunk = os.pread(fd, min(seg.size - self._head.offset, want), self._head.offset)
            offset = 0
            while len(out) < limit and offset + _HEAD.size <= len(chunk):
                length, crc, ts = _HEAD.unpack_from(chunk, offset)
                end = offset + _HEAD.size + length
                if end > len(chunk):
                    break
                body = chunk[offset + _HEAD.size:end]
                offset = end
                pos = Position(seg.number, self._head.offset + offset)
                if zlib.crc32(body) != crc:
                    self.counters["corrupt"] += 1
                    continue
                (tlen,) = _TOPIC.unpack_from(body)
                out.append(Record(pos, body[2:2 + tlen].decode(), body[2 + tlen:], ts))
            self._head = Position(seg.number, self._head.offset + offset)
        return out

    def commit(self, position: Position, records: int) -> None:
        """The ``records`` records before ``position`` have been acknowledged by the broker.

        A position at or behind the cursor (its segment was dropped meanwhile) changes nothing.
        """
        if position <= self._cursor:
            return
        self._cursor = position
        self._depth -= records
        self.counters["acknowledged"] += records
        self._cursor_dirty = True
        self._drop_acknowledged_segments()

    def rewind(self) -> None:
        """Read again from the first unacknowledged record."""
        self._head = self._cursor

    def flush(self) -> None:
        if self.fsync != "never":
            os.fsync(self._fd)
        if self._cursor_dirty:
            tmp = self.dir / "cursor.json.tmp"
            tmp.write_text(json.dumps({"segment": self._cursor.segment, "offset": self._cursor.offset}))
            if self.fsync != "never":
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            tmp.replace(self.dir / "cursor.json")
            self._cursor_dirty = False

    def close(self) -> None:
        self.flush()
        os.close(self._fd)
        if self._read_fd is not None:
            os.close(self._read_fd[1])
            self._read_fd = None

    # -- helpers -----------------------------------------------------------------------

    def _segment(self, number: int) -> _Segment | None:
        for s in self._segments:
            if s.number == number:
                return s
        return None

    def _segment_after(self, number: int) -> _Segment | None:
        for s in self._segments:
            if s.number > number:
                return s
        return None

    def _reader(self, seg: _Segment) -> int:
        if self._read_fd is None or self._read_fd[0] != seg.number:
            if self._read_fd is not None:
                os.close(self._read_fd[1])
            self._read_fd = (seg.number, os.open(seg.path, os.O_RDONLY))
        return self._read_fd[1]

    def _close_reader(self, number: int) -> None:
        if self._read_fd is not None and self._read_fd[0] == number:
            os.close(self._read_fd[1])
            self._read_fd = None

    def _records_in(self, seg: _Segment, position: Position) -> int:
        """How many records of ``seg`` lie before ``position`` (which is inside it)."""
        if position.offset >= seg.size:
            return seg.records
        count, offset = 0, 0
        fd = self._reader(seg)
        while offset < position.offset:
            head = os.pread(fd, _HEAD.size, offset)
            if len(head) < _HEAD.size:
                break
            (length, _, _) = _HEAD.unpack(head)
            offset += _HEAD.size + length
            count += 1
        return count

    def _records_before(self, position: Position) -> int:
        total = 0
        for s in self._segments:
            if s.number < position.segment:
                total += s.records
            elif s.number == position.segment:
                total += self._records_in(s, position)
        return total

    def _drop_acknowledged_segments(self) -> None:
        while len(self._segments) > 1 and self._segments[0].number < self._cursor.segment:
            seg = self._segments.popleft()
            self._close_reader(seg.number)
            seg.path.unlink(missing_ok=True)
        if len(self._segments) == 1:
            seg = self._segments[0]
            if self._cursor.segment == seg.number and self._cursor.offset >= seg.size and seg.size > self.segment_bytes // 2:
                self._roll()
                self._segments.popleft()
                self._close_reader(seg.number)
                seg.path.unlink(missing_ok=True)
                self._cursor = self._head = Position(self._segments[0].number, 0)

    def _peek_time(self, position: Position) -> float | None:
        seg = self._segment(position.segment)
        while seg is not None and position.offset >= seg.size:
            seg = self._segment_after(seg.number)
            position = Position(seg.number, 0) if seg else position
        if seg is None:
            return None
        head = os.pread(self._reader(seg), _HEAD.size, position.offset)
        return _HEAD.unpack(head)[2] if len(head) == _HEAD.size else None
