"""The reference city platform over real HTTP."""

import asyncio
from pathlib import Path

import httpx
import pytest

from contract.city import Batch, CommunitySummary
from simulators.city.app import create_app
from simulators.city.store import CityStore
from servicekit.http import HttpServer

pytestmark = pytest.mark.real


def _batch(key: str, *summaries: CommunitySummary) -> bytes:
    return Batch(key=key, community="c1", sent_at=1.0, summaries=summaries).model_dump_json().encode()


def _s(i: int, revision: int = 0, readings: int = 5) -> CommunitySummary:
    return CommunitySummary(key=f"c1:{i}", revision=revision, community="c1", window_start=i, window_end=i + 1,
                            devices=1, online=1, readings=readings)


async def test_deduplicates_batches_and_summaries_and_keeps_the_latest_revision(tmp_path: Path) -> None:
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    await server.started()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            post = lambda body: http.post("/api/v1/batches", content=body)  # noqa: E731
            assert (await post(_batch("b1", _s(1), _s(2)))).json() == {"key": "b1", "accepted": 2, "duplicates": 0}
            assert (await post(_batch("b1", _s(1), _s(2)))).json() == {"key": "b1", "accepted": 0, "duplicates": 2}
            assert (await post(_batch("b2", _s(2), _s(3)))).json() == {"key": "b2", "accepted": 1, "duplicates": 1}
            assert (await post(_batch("b3", _s(3, revision=1, readings=9)))).json()["accepted"] == 1
            bad = await http.post("/api/v1/batches", content=b'{"v":1,"key":"x","community":"c1","sent_at":1,"summaries":[]}')
            assert bad.status_code == 422 and "summaries" in bad.json()["detail"]
            summaries = (await http.get("/api/summaries", params={"community": "c1"})).json()
            assert sorted(s["key"] for s in summaries) == ["c1:1", "c1:2", "c1:3"]
            assert next(s for s in summaries if s["key"] == "c1:3")["readings"] == 9
            assert (await http.get("/api/communities")).json()[0]["summaries"] == 3
            assert "城市大脑" in (await http.get("/")).text
    finally:
        server.stop()
        await task
        store.close()
