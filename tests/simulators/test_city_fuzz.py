"""The city platform's API fuzzed from its own OpenAPI (schemathesis) over a real socket:
no 5xx, and every answer fits its schema."""

import asyncio
from pathlib import Path

import pytest

from contract.downlink import new_signing_key
from tests.api_fuzz import answer_fits, fuzz
from tests.city_and_bridge import serving_city

pytestmark = pytest.mark.real


@pytest.mark.timeout(180)
async def test_the_citys_api_answers_fuzzed_requests_without_a_5xx_and_within_its_schemas(tmp_path: Path) -> None:
    private, _ = new_signing_key()
    async with serving_city(tmp_path, {"c1": b"key-of-c1"}, signing_key=private, operator_token="op") as (server, store):
        # As an operator, so that issuing items down is fuzzed past its token check too.
        failures = await asyncio.to_thread(fuzz, server.url, headers={"authorization": "Bearer op"})
        assert not failures, "\n\n".join(failures)
        # What the fuzzing was refused with is counted like any other refusal.
        assert any(c["status"] == 422 for c in store.refusal_counts())


async def test_the_citys_own_422_answers_fit_its_schema(tmp_path: Path) -> None:
    private, _ = new_signing_key()
    async with serving_city(tmp_path, {"c1": b"key-of-c1"}, signing_key=private, operator_token="op") as (server, _):
        operator = {"authorization": "Bearer op"}
        notice = {"title": "停水通知", "body": "明天停水"}
        two = {"community": "c1", "notice": notice, "config": {"summary_interval_s": 60}}
        status = await asyncio.to_thread(answer_fits, server.url, "POST", "/api/v1/downlink", headers=operator,
                                         body=two)
        assert status == 422
        status = await asyncio.to_thread(answer_fits, server.url, "GET", "/api/summaries",
                                         query={"period": 10**30})
        assert status == 422
