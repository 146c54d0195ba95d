"""A community's key speaks only for that community: a batch signed with B's key that
carries a summary of A is refused whole, over HTTP and over the city's MQTT broker; a
summary of B's under a key A uses (keys are predictable) is B's own and leaves A's alone; an NGSI-LD entity of A's in B's upsert is
refused (the others taken, as NGSI-LD's batch upsert does). A's figures stay as they were,
and each refusal is counted and kept where a person can look."""

import asyncio
import json
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract.city import (
    COMMUNITY_HEADER,
    SIGNATURE_HEADER,
    Batch,
    BatchAnswer,
    CommunitySummary,
    MqttBatchHeader,
    city_acks_topic,
    city_batches_topic,
    mqtt_batch,
    sign,
)
from contract.endpoints import MqttEndpoint
from contract.ngsild import CONTENT_TYPE as NGSI_CONTENT_TYPE
from contract.ngsild import UPSERT_PATH, entities
from midbrain.broker import free_port
from simulators.city.service import run_city
from simulators.settings import CitySettings
from tests.city_and_bridge import serving_city

pytestmark = pytest.mark.real

KEYS = {"a": b"key-of-a", "b": b"key-of-b"}


def _summary(community: str, key: str, readings: int, revision: int = 0) -> CommunitySummary:
    return CommunitySummary(key=key, revision=revision, community=community, window_start=60, window_end=120,
                            devices=10, online=10, readings=readings)


def _batch(key: str, community: str, *summaries: CommunitySummary) -> bytes:
    return Batch(key=key, community=community, sent_at=1.0, summaries=summaries).model_dump_json().encode()


def _signed(body: bytes, community: str) -> dict[str, str]:
    return {COMMUNITY_HEADER: community, SIGNATURE_HEADER: sign(KEYS[community], body)}


async def test_bs_key_cannot_change_as_figures_over_http(tmp_path: Path) -> None:
    async with serving_city(tmp_path, KEYS) as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            async def post(body: bytes, community: str) -> httpx.Response:
                return await http.post("/api/v1/batches", content=body, headers=_signed(body, community))

            own = _batch("a-1", "a", _summary("a", "a:60", readings=5))
            assert (await post(own, "a")).json()["accepted"] == 1
            before = (await http.get("/api/communities/a/latest")).json()

            forged = [
                # A's summary (its community, its key, a newer revision) in B's batch, signed by B.
                _batch("b-1", "b", _summary("a", "a:60", readings=999, revision=9)),
                # B's own summary beside A's: refused whole, B's own one not stored either.
                _batch("b-2", "b", _summary("b", "b:60", readings=1), _summary("a", "a:120", readings=999)),
            ]
            for body in forged:
                response = await post(body, "b")
                assert response.status_code == 403, response.text
                assert "refused whole" in response.json()["detail"]
            # A summary that says B, under the key A's summary has, and under a key A will use
            # next: B's own summaries, which touch nothing of A's.
            taken = await post(_batch("b-3", "b", _summary("b", "a:60", readings=999, revision=9),
                                      _summary("b", "a:120", readings=999)), "b")
            assert taken.json()["accepted"] == 2
            assert (await http.get("/api/communities/a/latest")).json() == before
            assert (await post(_batch("a-2", "a", _summary("a", "a:120", readings=6)), "a")).json()["accepted"] == 1

            assert (await http.get("/api/communities/a/latest")).json()["summary"]["readings"] == 6
            assert [s["readings"] for s in (await http.get("/api/summaries", params={"community": "a"})).json()] \
                == [6, 5]
            assert [s["readings"] for s in (await http.get("/api/summaries", params={"community": "b"})).json()] \
                == [999, 999]
            stats = (await http.get("/api/stats")).json()
            assert stats["refused_batches"] == 2 and stats["refused_foreign_summaries"] == 2
            refusals = (await http.get("/api/refusals")).json()
            assert len(refusals) == 2 and all(r["community"] == "b" for r in refusals)
            assert all("other communities" in r["reason"] for r in refusals)
            counts = {(c["route"], c["status"], c["reason"]): c["count"]
                      for c in (await http.get("/api/refusals/counts")).json()}
            assert counts == {("/api/v1/batches", 403, "foreign_summaries"): 2}
            text = (await http.get("/metrics")).text
            assert ('midbrain_city_refusals_total{reason="foreign_summaries",route="/api/v1/batches",status="403"} 2.0'
                    in text), text
            assert "midbrain_city_refused_foreign_summaries_total 2.0" in text


async def test_bs_key_cannot_change_as_figures_through_the_city_broker(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    settings = CitySettings(http_port=free_port(), database=tmp_path / "city.sqlite3", mqtt=mosquitto,
                            community_keys={c: k.decode() for c, k in KEYS.items()})
    stop, ready = asyncio.Event(), asyncio.Event()
    city = asyncio.create_task(run_city(settings, stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as http:
            await client.subscribe(city_acks_topic("a"), qos=1)
            await client.subscribe(city_acks_topic("b"), qos=1)

            async def send(community: str, key: str, body: bytes) -> BatchAnswer:
                header = MqttBatchHeader(community=community, key=key, signature=sign(KEYS[community], body))
                await client.publish(city_batches_topic(community), mqtt_batch(header, body), qos=1)
                async with asyncio.timeout(10):
                    async for message in client.messages:
                        answer = BatchAnswer.model_validate_json(message.payload)  # type: ignore[arg-type]
                        if answer.key == key:
                            return answer
                raise AssertionError("unreachable")

            # The city's subscription is in place once an answer comes back.
            answer = await send("a", "a-1", _batch("a-1", "a", _summary("a", "a:60", readings=5)))
            assert answer.status == 200 and answer.ack is not None and answer.ack.accepted == 1
            before = (await http.get("/api/communities/a/latest")).json()

            answer = await send("b", "b-1", _batch("b-1", "b", _summary("a", "a:60", readings=999, revision=9)))
            assert answer.status == 403 and "other communities" in answer.reason
            answer = await send("b", "b-2", _batch("b-2", "b", _summary("b", "a:60", readings=999, revision=9)))
            assert answer.status == 200  # B's own summary, under a key A also uses

            assert (await http.get("/api/communities/a/latest")).json() == before
            stats = (await http.get("/api/stats")).json()
            assert stats["refused_batches"] == 1 and stats["refused_foreign_summaries"] == 1
            counts = {(c["route"], c["status"], c["reason"]): c["count"]
                      for c in (await http.get("/api/refusals/counts")).json()}
            assert counts == {("city/v1/+/batches", 403, "foreign_summaries"): 1}
            assert len((await http.get("/api/refusals")).json()) == 1
    finally:
        stop.set()
        await asyncio.wait_for(city, 20)


async def test_what_was_a_500_is_a_422_and_refusals_are_counted_by_route_and_reason(tmp_path: Path) -> None:
    async with serving_city(tmp_path, KEYS, operator_token="op") as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            # A NaN in a JSON body (Python's reader takes it), echoed in the 422 as a string.
            nan = await http.post("/api/v1/downlink", content=b'{"community": "a", "expires_in_s": NaN}',
                                  headers={"authorization": "Bearer op", "content-type": "application/json"})
            assert nan.status_code == 422 and nan.json()["detail"][0]["input"] == "nan", nan.text
            huge = str(10**30)
            for path in ("/api/summaries", "/api/communities/a/latest", "/api/communities/a/series"):
                response = await http.get(path, params={"period": huge})
                assert response.status_code == 422, (path, response.text)
                assert response.json()["detail"][0]["loc"] == ["query", "period"]
            assert (await http.get("/api/summaries", params={"limit": "many"})).status_code == 422
            # A batch larger than the city takes: 413, whoever refuses it (the app, or a body-size limit).
            bomb = json.dumps({"pad": "x" * (33 * 1024 * 1024)}).encode()
            response = await http.post("/api/v1/batches", content=bomb, headers=_signed(b"", "a"))
            assert response.status_code == 413, response.text[:200]
            counts = {(c["route"], c["status"], c["reason"]): c["count"]
                      for c in (await http.get("/api/refusals/counts")).json()}
            too_large = [k for k in counts if k[:2] == ("/api/v1/batches", 413)]
            assert len(too_large) == 1 and counts.pop(too_large[0]) == 1, counts
            assert counts == {
                ("/api/v1/downlink", 422, "greater_than"): 1,
                ("/api/summaries", 422, "less_than_equal"): 1,
                ("/api/summaries", 422, "int_parsing"): 1,
                ("/api/communities/{community}/latest", 422, "less_than_equal"): 1,
                ("/api/communities/{community}/series", 422, "less_than_equal"): 1,
            }
            text = (await http.get("/metrics")).text
            assert ('midbrain_city_refusals_total{reason="less_than_equal",route="/api/summaries",status="422"} 1.0'
                    in text), text
            # A path the city does not serve is not a refusal.
            assert (await http.get("/api/nothing-here")).status_code == 404
            assert len((await http.get("/api/refusals/counts")).json()) == 6


async def test_bs_key_cannot_upsert_as_ngsi_ld_entities(tmp_path: Path) -> None:
    location = (120.1485, 30.2422)
    async with serving_city(tmp_path, KEYS) as (server, store):
        async with httpx.AsyncClient(base_url=server.url) as http:
            async def upsert(community: str, items: list[dict[str, object]]) -> httpx.Response:
                body = json.dumps(items).encode()
                return await http.post(UPSERT_PATH, content=body, headers={
                    **_signed(body, community), "content-type": NGSI_CONTENT_TYPE})

            as_own = entities(_summary("a", "a:60", readings=5), location)
            assert (await upsert("a", as_own)).status_code == 201
            held = (await http.get("/ngsi-ld/v1/entities", params={"idPrefix": "urn:ngsi-ld:"})).json()

            # A's entities (changed) under B's key; and B's id with A named as the area served.
            forged = entities(_summary("a", "a:60", readings=999, revision=1), location)
            disguised = entities(_summary("b", "b:60", readings=1), location)[0]
            disguised["areaServed"] = {"type": "Property", "value": "a"}
            response = await upsert("b", [*forged, disguised])
            assert response.status_code == 207 and response.json()["success"] == []
            assert all("another community" in e["error"]["detail"] for e in response.json()["errors"])

            assert (await http.get("/ngsi-ld/v1/entities", params={"idPrefix": "urn:ngsi-ld:"})).json() == held
            stats = (await http.get("/api/stats")).json()
            assert stats["refused_entities"] == stats["refused_foreign_entities"] == len(forged) + 1
            assert "entities refused" in (await http.get("/api/refusals")).json()[0]["reason"]
            counts = (await http.get("/api/refusals/counts")).json()
            assert counts == [{"route": UPSERT_PATH, "status": 207, "reason": "foreign_entities", "count": 1}]
