"""Deliver sealed batches to the city platform over HTTP(S), with jittered backoff."""

import asyncio
import gzip
import logging
import ssl

import httpx

from cloud_bridge.outbox import Outbox
from contract.city import COMMUNITY_HEADER, SIGNATURE_HEADER, sign
from cloud_bridge.settings import BridgeSettings
from servicekit.backoff import Backoff
from servicekit.lifecycle import wait_or_stop

log = logging.getLogger(__name__)

BATCHES_PATH = "/api/v1/batches"


def http_client(settings: BridgeSettings) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = True
    if settings.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.ca_file))
    if settings.client_cert is not None:
        if not isinstance(verify, ssl.SSLContext):
            verify = ssl.create_default_context()
        verify.load_cert_chain(str(settings.client_cert), str(settings.client_key) if settings.client_key else None)
    return httpx.AsyncClient(base_url=settings.city_url, verify=verify, timeout=settings.http_timeout_s)


class Deliverer:
    def __init__(self, outbox: Outbox, settings: BridgeSettings, client: httpx.AsyncClient, community: str) -> None:
        self._outbox = outbox
        self._community = community
        self.bytes_sent = 0  # request bodies, as sent (gzip included)
        self.signature_refused = 0
        self._settings = settings
        self._client = client
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.wake = asyncio.Event()
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
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
        batch = await asyncio.to_thread(self._outbox.next_batch)
        if batch is None:
            return None
        key = self._settings.community_key.get_secret_value().encode()
        await asyncio.to_thread(self._outbox.log_sent, batch, f"{self._settings.city_url}{BATCHES_PATH}", key)
        headers = {"content-type": "application/json", "idempotency-key": batch.key,
                   SIGNATURE_HEADER: sign(key, batch.body), COMMUNITY_HEADER: self._community}
        body = batch.body
        if len(body) >= self._settings.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["content-encoding"] = "gzip"
        try:
            response = await self._client.post(BATCHES_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return await self._failed(batch.key, f"{type(exc).__name__}: {exc}")
        self.bytes_sent += len(body)
        if response.status_code in (401, 403):
            # A key that does not match the city's: keep the batch (nothing is lost once the
            # keys agree) and say so loudly.
            self.signature_refused += 1
            log.error("city refused the signature of batch %s: %s", batch.key, response.text[:300])
            return await self._failed(batch.key, f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code == 200:
            await asyncio.to_thread(self._outbox.acknowledged, batch.key)
            self._backoff.reset()
            return True
        if response.status_code in (400, 413, 422):
            reason = f"HTTP {response.status_code}: {response.text[:500]}"
            log.error("city rejected batch %s for good: %s", batch.key, reason)
            await asyncio.to_thread(self._outbox.reject, batch.key, reason)
            return True
        return await self._failed(batch.key, f"HTTP {response.status_code}")

    async def _failed(self, key: str, error: str) -> bool:
        self.failures += 1
        log.warning("batch %s not delivered (%s); will retry", key, error)
        await asyncio.to_thread(self._outbox.failed, key, error)
        return False
