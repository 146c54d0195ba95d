"""Receiving a community's batch, whichever way it came (HTTPS, or the city's MQTT broker):
inflate, verify the signature, decode, check that every summary is the signer's, store once.
A batch refused on the way is logged and kept in ``refusals`` with its reason.

A community's key speaks only for that community: a batch is refused whole (403) if any
summary in it names another community. Whole, not in part: an honest bridge never mixes
communities, so such a batch comes from a stolen key or a broken bridge, and storing the
rest of it would hide that. (Summary keys are each community's own, in the store: the same
key from another community is another summary, and cannot touch this one's.)"""

import logging
import zlib

from pydantic import ValidationError

from contract.city import BatchAck, verify
from contract.fastcodec import decode_batch
from simulators.city.store import CityStore

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 32 * 1024 * 1024


class BatchRefused(Exception):
    """Not stored: ``status`` as HTTP would say it (400, 401, 403, 413, 422), why, and
    ``code``, a short fixed name of the reason that metrics count by."""

    def __init__(self, status: int, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.code = code


class BatchReceiver:
    def __init__(self, store: CityStore, community_keys: dict[str, bytes]) -> None:
        self.store = store
        self.keys = dict(community_keys)

    def _refuse(self, status: int, reason: str, code: str, community: str, source: str,
                foreign: int = 0) -> BatchRefused:
        log.warning("refused batch from %s (community %r): %s", source, community, reason)
        self.store.refused(community, reason, foreign)
        return BatchRefused(status, reason, code)

    def receive(self, community: str, signature: str, encoding: str, body: bytes, source: str) -> BatchAck:
        body = self.open(community, signature, encoding, body, source)
        try:
            batch_key, batch_community, summaries = decode_batch(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}"
            log.warning("rejected a batch from %s: %s", source, reason)
            raise BatchRefused(422, reason, "invalid") from exc
        if batch_community != community:
            raise self._refuse(403, f"batch of community {batch_community!r} signed as {community!r}",
                               "community_mismatch", community, source)
        foreign = sorted({s.community for s, _ in summaries if s.community != community})
        if foreign:
            n = sum(s.community != community for s, _ in summaries)
            raise self._refuse(403, f"batch signed as {community!r} carries {n} of {len(summaries)} summaries of "
                               f"other communities ({', '.join(map(repr, foreign[:5]))}): refused whole",
                               "foreign_summaries", community, source, n)
        return self.store.accept(batch_key, community, summaries)

    def open(self, community: str, signature: str, encoding: str, body: bytes, source: str) -> bytes:
        """The body inflated and its signature verified (BatchRefused if not)."""
        if encoding == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:  # bounded: a small gzip body must not expand without limit
                body = inflate.decompress(body, MAX_BATCH_BYTES + 1)
            except zlib.error as exc:
                raise self._refuse(400, f"body is not valid gzip: {exc}", "gzip", community, source) from None
            if len(body) <= MAX_BATCH_BYTES and (not inflate.eof or inflate.unused_data):
                raise self._refuse(400, "body is not valid gzip: truncated, or bytes after its end", "gzip", community,
                                   source)
        elif encoding not in ("", "identity"):
            raise self._refuse(400, f"unknown content encoding {encoding!r}", "encoding", community, source)
        if len(body) > MAX_BATCH_BYTES:
            raise BatchRefused(413, f"batch of {len(body)} bytes exceeds {MAX_BATCH_BYTES}", "too_large")
        key = self.keys.get(community)
        if key is None:
            raise self._refuse(401, f"unknown community {community!r}: no signing key is registered for it",
                               "unknown_community", community, source)
        if not verify(key, body, signature):
            raise self._refuse(401, "signature does not match the body (wrong key, or the batch was altered)",
                               "signature", community, source)
        return body
