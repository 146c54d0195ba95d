"""The hub's API fuzzed from its own OpenAPI (schemathesis) over a real socket, as a
logged-in administrator's token (so the routes behind a login are fuzzed past it): no 5xx,
and every answer fits its schema."""

import asyncio
import os
import secrets
from pathlib import Path

import httpx
import pytest

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.settings import HubSettings
from tests.api_fuzz import fuzz
from tests.hub.conftest import serving_hub

pytestmark = pytest.mark.real

PASSWORD = "fuzz-password-" + secrets.token_hex(8)
# Server-sent events never end: not something a bounded case can call.
SKIP = r"^GET /api/stream$"


@pytest.mark.timeout(240)
async def test_the_hubs_api_answers_fuzzed_requests_without_a_5xx_and_within_its_schemas(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    # No bridge to ask for its egress log: /api/egress-log answers 404 (with one that does not
    # answer it is a 502, which is right for a gateway and no fault of the hub's).
    # A hub that serves its OpenAPI only when asked (hub.api_docs) is asked to.
    docs = {"api_docs": True} if "api_docs" in HubSettings.model_fields else {}
    async with serving_hub(tmp_path, community, mosquitto, bridge_url="", **docs) as (url, hub):
        assert hub.accounts is not None
        hub.accounts.add_user("fuzz-admin", PASSWORD, "admin")
        async with httpx.AsyncClient(base_url=url) as admin:
            assert (await admin.post("/api/login", json={"name": "fuzz-admin", "password": PASSWORD})).status_code == 200
            made = await admin.post("/api/tokens", json={"name": f"fuzz-{secrets.token_hex(4)}", "role": "admin"})
            assert made.status_code == 201, made.text
        headers = {"authorization": f"Bearer {made.json()['token']}"}
        examples = int(os.environ.get("MIDBRAIN_FUZZ_EXAMPLES", "20"))
        failures = await asyncio.to_thread(fuzz, url, headers=headers, skip=SKIP, examples=examples)
        assert not failures, "\n\n".join(failures)
