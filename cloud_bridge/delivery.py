"""Deliver sealed batches to the city platform, with jittered backoff, over one transport:
HTTPS (:class:`HttpTransport`) or the city's MQTT broker (cloud_bridge/city_mqtt.py)."""

import asyncio
import gzip
import logging
import ssl
from typing import Protocol

import httpx

from cloud_bridge.outbox import Outbox, OutgoingBatch, key_id
from contract.city import COMMUNITY_HEADER, SIGNATURE_HEADER, sign
from cloud_bridge.settings import BridgeSettings
from servicekit.backoff import Backoff
from servicekit.lifecycle import wait_or_stop
from servicekit.tls import client_context

log = logging.getLogger(__name__)

BATCHES_PATH = "/api/v1/batches"


def http_client(settings: BridgeSettings) -> httpx.AsyncClient:
    """The client for every request to the city: it verifies the city's certificate and host
    name against ``ca_file`` (else the system's trust store), always."""
    verify = client_context(settings.ca_file, settings.client_cert, settings.client_key)
    client = httpx.AsyncClient(base_url=settings.city_url, verify=verify, timeout=settings.http_timeout_s)
    # Only the headers the city reads: httpx's defaults (accept */*, accept-encoding,
    # connection: keep-alive, its version) were 90 bytes on every request, about a tenth of
    # what a community sends up (python benchmarks/egress_volume.py).
    for name in ("accept", "accept-encoding", "connection"):
        del client.headers[name]
    client.headers["user-agent"] = "midbrain-bridge"
    return client


class TransportError(Exception):
    """The batch may not have arrived (no answer, link down): retry later."""


class CertificateRefused(TransportError):
    """The city's certificate did not verify (unknown CA, wrong host name, expired): nothing
    was sent. A config problem or someone else answering for the city; retried later."""


def transport_error(exc: httpx.HTTPError) -> TransportError:
    """Map an httpx error to ours, telling a certificate that did not verify apart."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return CertificateRefused(f"certificate of the city not verified: {cause.verify_message or cause}")
        cause = cause.__cause__ or cause.__context__
    return TransportError(f"{type(exc).__name__}: {exc}")


class Transport(Protocol):
    async def send(self, key: str, community: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """Deliver one signed batch; the city's answer as (HTTP-like status, text)."""
        ...


class HttpTransport:
    """POST /api/v1/batches (HTTPS in production: the server certificate is verified)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, key: str, community: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            response = await self.client.post(BATCHES_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        return response.status_code, response.text


class Deliverer:
    def __init__(self, outbox: Outbox, settings: BridgeSettings, transport: Transport, community: str,
                 destination: str) -> None:
        self._outbox = outbox
        self._community = community
        self._destination = destination  # what the egress log records as "to whom"
        self.bytes_sent = 0  # request bodies, as sent (gzip included)
        self.signature_refused = 0
        self.certificate_refused = 0  # attempts not made because the city's certificate did not verify
        self._settings = settings
        self._transport = transport
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self.failures = 0

    @classmethod
    def http(cls, outbox: Outbox, settings: BridgeSettings, client: httpx.AsyncClient, community: str) -> "Deliverer":
        return cls(outbox, settings, HttpTransport(client), community, f"{settings.city_url}{BATCHES_PATH}")

    async def run(self, stop: asyncio.Event) -> None:
        """Up to ``max_in_flight`` batches on their way at once: the city verifies and stores
        one while the next is prepared and sent."""
        async with asyncio.TaskGroup() as tg:
            for n in range(self._settings.max_in_flight):
                tg.create_task(self._worker(stop), name=f"bridge-deliver-{n}")

    async def drain(self) -> int:
        """Send everything sealed, max_in_flight at a time; how many batches failed."""
        failed = 0

        async def worker() -> None:
            nonlocal failed
            while (result := await self.deliver_one()) is not None:
                failed += result is False
                if result is False:
                    return

        await asyncio.gather(*(worker() for _ in range(self._settings.max_in_flight)))
        return failed

    async def _worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            delivered = await self.deliver_one()
            if delivered is None:  # nothing to send: wait for work
                self.wake.clear()
                waiter = asyncio.create_task(self.wake.wait())
                try:
                    await asyncio.wait([waiter], timeout=self._settings.batch_interval_s)
                finally:
                    waiter.cancel()
            elif not delivered:
                if await wait_or_stop(stop, self._backoff.next_delay()):
                    return

    async def deliver_one(self) -> bool | None:
        """Send the oldest batch: True sent, False failed (retry later), None nothing to send."""
        while True:
            batch = await asyncio.to_thread(self._outbox.next_batch, frozenset(self._in_flight))
            if batch is None:
                return None
            if batch.key not in self._in_flight:  # else another worker took it meanwhile: the next one
                break
        self._in_flight.add(batch.key)
        try:
            return await self._deliver(batch)
        finally:
            self._in_flight.discard(batch.key)

    async def _deliver(self, batch: OutgoingBatch) -> bool:
        key = self._settings.community_key.get_secret_value().encode()
        reshape = getattr(self._transport, "body_of", None)  # a transport with a body of its own (NGSI-LD)
        if reshape is not None:
            try:
                body = reshape(batch.body)
            except ValueError as exc:  # it would not fit the city's models: never sent, kept for a person
                log.error("batch %s cannot be sent: %s", batch.key, exc)
                await asyncio.to_thread(self._outbox.reject, batch.key, str(exc))
                return True
            batch = await asyncio.to_thread(OutgoingBatch.of, batch.key, body, batch.summaries, batch.attempts,
                                            batch.summary_keys, signing_key=key,
                                            gzip_min_bytes=self._settings.gzip_min_bytes)
        await asyncio.to_thread(self._outbox.log_sent, batch, self._destination, key)
        # Sealed batches come compressed and signed already; a batch sealed under another key
        # (or by an older bridge) is signed again now.
        signature = batch.signature if batch.signature and batch.key_id == key_id(key) else sign(key, batch.body)
        headers = {"content-type": "application/json", "idempotency-key": batch.key,
                   SIGNATURE_HEADER: signature, COMMUNITY_HEADER: self._community}
        body = batch.payload
        if batch.encoding == "gzip":
            headers["content-encoding"] = "gzip"
        elif len(body) >= self._settings.gzip_min_bytes:  # sealed uncompressed by an older bridge
            body = await asyncio.to_thread(gzip.compress, body, 6, mtime=0)
            headers["content-encoding"] = "gzip"
        try:
            status, text = await self._transport.send(batch.key, self._community, body, headers)
        except CertificateRefused as exc:
            self.certificate_refused += 1
            log.error("batch %s not sent to %s: %s (check bridge.ca_file and city_url)", batch.key,
                      self._destination, exc)
            return await self._failed(batch.key, str(exc))
        except TransportError as exc:
            return await self._failed(batch.key, str(exc))
        self.bytes_sent += len(body)
        if status in (401, 403):
            # A key that does not match the city's: keep the batch (nothing is lost once the
            # keys agree) and say so loudly.
            self.signature_refused += 1
            log.error("city refused the signature of batch %s: %s", batch.key, text[:300])
            return await self._failed(batch.key, f"HTTP {status}: {text[:300]}")
        if status == 200:
            await asyncio.to_thread(self._outbox.acknowledged, batch.key)
            self._backoff.reset()
            return True
        if status in (400, 413, 422):
            reason = f"HTTP {status}: {text[:500]}"
            log.error("city rejected batch %s for good: %s", batch.key, reason)
            await asyncio.to_thread(self._outbox.reject, batch.key, reason)
            return True
        return await self._failed(batch.key, f"HTTP {status}")

    async def _failed(self, key: str, error: str) -> bool:
        self.failures += 1
        log.warning("batch %s not delivered (%s); will retry", key, error)
        await asyncio.to_thread(self._outbox.failed, key, error)
        return False
