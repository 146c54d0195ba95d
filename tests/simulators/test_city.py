"""The reference city platform over real HTTP."""

import gzip
from pathlib import Path

import httpx
import pytest

from contract.city import COMMUNITY_HEADER, SIGNATURE_HEADER, Batch, CommunitySummary, sign
from tests.city_and_bridge import serving_city as shared_serving_city

pytestmark = pytest.mark.real

KEY = b"key-of-c1"


def signed(body: bytes, community: str = "c1", key: bytes = KEY) -> dict[str, str]:
    return {COMMUNITY_HEADER: community, SIGNATURE_HEADER: sign(key, body)}


def serving_city(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The city platform on a free port, with c1's key."""
    return shared_serving_city(tmp_path, {"c1": KEY})


def _batch(key: str, *summaries: CommunitySummary) -> bytes:
    return Batch(key=key, community="c1", sent_at=1.0, summaries=summaries).model_dump_json().encode()


def _s(i: int, revision: int = 0, readings: int = 5) -> CommunitySummary:
    return CommunitySummary(key=f"c1:{i}", revision=revision, community="c1", window_start=i, window_end=i + 1,
                            devices=1, online=1, readings=readings)


async def test_deduplicates_batches_and_summaries_and_keeps_the_latest_revision(tmp_path: Path) -> None:
    async with serving_city(tmp_path) as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            post = lambda body: http.post("/api/v1/batches", content=body, headers=signed(body))  # noqa: E731
            assert (await post(_batch("b1", _s(1), _s(2)))).json() == {"key": "b1", "accepted": 2, "duplicates": 0}
            assert (await post(_batch("b1", _s(1), _s(2)))).json() == {"key": "b1", "accepted": 0, "duplicates": 2}
            assert (await post(_batch("b2", _s(2), _s(3)))).json() == {"key": "b2", "accepted": 1, "duplicates": 1}
            assert (await post(_batch("b3", _s(3, revision=1, readings=9)))).json()["accepted"] == 1
            empty = b'{"v":1,"key":"x","community":"c1","sent_at":1,"summaries":[]}'
            bad = await http.post("/api/v1/batches", content=empty, headers=signed(empty))
            assert bad.status_code == 422 and "summaries" in bad.json()["detail"]
            summaries = (await http.get("/api/summaries", params={"community": "c1"})).json()
            assert sorted(s["key"] for s in summaries) == ["c1:1", "c1:2", "c1:3"]
            assert next(s for s in summaries if s["key"] == "c1:3")["readings"] == 9
            assert (await http.get("/api/communities")).json()[0]["summaries"] == 3
            assert "城市大脑" in (await http.get("/")).text


async def test_a_batch_whose_signature_does_not_hold_is_refused_with_its_reason_logged_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with serving_city(tmp_path) as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = _batch("b1", _s(1))
            post = lambda content, headers: http.post("/api/v1/batches", content=content, headers=headers)  # noqa: E731
            cases = [
                (body, signed(body, key=b"another key"), 401, "signature does not match"),
                (body.replace(b'"readings":5', b'"readings":6'), signed(body), 401, "signature does not match"),
                (body, {COMMUNITY_HEADER: "c1"}, 401, "signature does not match"),  # unsigned
                (body, signed(body, community="c9"), 401, "unknown community 'c9'"),
                (gzip.compress(b"not json at all") + b"junk", {**signed(body), "content-encoding": "gzip"}, 400,
                 "not valid gzip"),
            ]
            for content, headers, status, reason in cases:
                response = await post(content, headers)
                assert response.status_code == status and reason in response.json()["detail"], response.text
            c2 = Batch(key="b2", community="c2", sent_at=1.0, summaries=(_s(2),)).model_dump_json().encode()
            mismatch = await post(c2, signed(c2))  # signed as c1, claims c2
            assert mismatch.status_code == 403 and "signed as 'c1'" in mismatch.json()["detail"]
            assert store.stats()["summaries"] == 0 and store.stats()["refused_batches"] == len(cases) + 1
            refusals = (await http.get("/api/refusals")).json()
            assert len(refusals) == len(cases) + 1 and refusals[-1]["reason"].startswith("signature does not match")
            assert sum("refused batch" in r.getMessage() for r in caplog.records) == len(cases) + 1
            # The right signature over a gzip body goes through.
            ok = await post(gzip.compress(body), {**signed(body), "content-encoding": "gzip"})
            assert ok.status_code == 200 and ok.json()["accepted"] == 1


async def test_the_city_serves_each_communitys_kpis_and_an_overview_page_chromium_renders(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from tests.hub.test_staff_page import CHROMIUM_ARGS, chromium

    async with serving_city(tmp_path) as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            for i in range(3):
                summary = CommunitySummary(key=f"c1:{i}", community="c1", window_start=60.0 * i, window_end=60.0 * i + 60,
                                           devices=10, online=9 - i, readings=50, alerts={"fire": i},
                                           alerts_by_severity={"critical": i})
                body = _batch(f"b{i}", summary)
                assert (await http.post("/api/v1/batches", content=body, headers=signed(body))).status_code == 200
            latest = (await http.get("/api/communities/c1/latest")).json()
            assert latest["kpis"]["online_share"] == 0.7 and latest["kpis"]["critical_alerts"] == 2
            series = (await http.get("/api/communities/c1/series", params={"since": 60})).json()
            assert [s["online_share"] for s in series] == [0.8, 0.7]
            assert (await http.get("/api/communities/c9/latest")).status_code == 404
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(server.url + "/")
            assert "城市大脑" in await page.title()
            row = page.locator("#communities tr").nth(1)
            assert (await row.locator("td").nth(0).inner_text()) == "c1"
            assert (await row.locator("td").nth(3).inner_text()) == "70.0%"
            await browser.close()


def test_refusals_kept_to_be_read_are_bounded_and_what_goes_is_counted(tmp_path: Path) -> None:
    from simulators.city.store import CityStore

    store = CityStore(tmp_path / "city.sqlite3", keep_refusals=3)
    try:
        for i in range(5):
            store.refused("c9", f"refusal {i}")
        assert [r["reason"] for r in store.refusals(100)] == ["refusal 4", "refusal 3", "refusal 2"]
        assert store.stats()["refused_batches"] == 5 and store.stats()["refusals_forgotten"] == 2
    finally:
        store.close()


def test_a_city_from_before_per_community_summary_keys_is_rekeyed_and_keeps_its_summaries(tmp_path: Path) -> None:
    import sqlite3

    from contract.fastcodec import decode_batch
    from simulators.city.store import CityStore

    path = tmp_path / "city.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE summaries (key TEXT PRIMARY KEY, community TEXT NOT NULL, revision INTEGER NOT NULL, "
                "window_start REAL NOT NULL, window_end REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL)")
    old.execute("INSERT INTO summaries VALUES ('c1:1', 'c1', 0, 1, 2, 0, ?)", (_s(1).model_dump_json(),))
    old.commit()
    old.close()
    store = CityStore(path)
    try:
        assert [s["key"] for s in store.summaries("c1", 10)] == ["c1:1"]
        c2 = CommunitySummary(key="c1:1", revision=9, community="c2", window_start=1, window_end=2, devices=1,
                              online=1, readings=999)
        key, community, summaries = decode_batch(
            Batch(key="b", community="c2", sent_at=1.0, summaries=(c2,)).model_dump_json().encode())
        assert store.accept(key, community, summaries).accepted == 1
        assert [s["readings"] for s in store.summaries("c1", 10)] == [5]  # c2's key space is its own
    finally:
        store.close()
