"""Batches as NGSI-LD entities to a FIWARE context broker (``bridge.transport = "ngsi-ld"``).

Each sealed batch becomes the Smart Data Model entities of its summaries
(contract/ngsild.py), checked against the models' attribute definitions before they are
sent, and is upserted in one request (``POST /ngsi-ld/v1/entityOperations/upsert``, the
standard batch operation; entity ids carry the window, so a repeated or revised batch
replaces what it sent before). The request carries the same community signature headers
as the HTTPS transport, for a city that checks them (the reference city does); a broker
that does not simply ignores them.
"""

import json
import logging

import httpx

from cloud_bridge.delivery import transport_error
from contract.city import CommunitySummary
from contract.ngsild import CONTENT_TYPE, UPSERT_PATH, check, entities

log = logging.getLogger(__name__)


class NgsiLdTransport:
    def __init__(self, client: httpx.AsyncClient, base_url: str, location: tuple[float, float],
                 tenant: str | None = None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.location = location
        self.tenant = tenant
        self.entities_sent = 0

    @property
    def destination(self) -> str:
        return f"{self.base_url}{UPSERT_PATH}"

    def body_of(self, batch_json: bytes) -> bytes:
        """The batch's entities as the upsert body; ValueError if one fails its model."""
        summaries = [CommunitySummary.model_validate(s) for s in json.loads(batch_json)["summaries"]]
        out = [e for s in summaries for e in entities(s, self.location)]
        for entity in out:
            problems = check(entity)
            if problems:
                raise ValueError(f"entity {entity['id']} does not fit its Smart Data Model: {'; '.join(problems)}")
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()

    async def send(self, key: str, community: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        headers = {**headers, "content-type": CONTENT_TYPE}
        if self.tenant:
            headers["NGSILD-Tenant"] = self.tenant
        try:
            response = await self.client.post(self.destination, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if response.status_code in (200, 201, 204):
            self.entities_sent += 1
            return 200, response.text
        if response.status_code == 207:  # some entities refused: the broker says which, and why
            return 422, response.text
        return response.status_code, response.text
