"""The residents' requests' JSON API through the hub's real app on a socket: report, track,
rate, reopen, the triage queue, volunteers' photos, and bad input of every kind."""

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.settings import ResidentsSettings
from tests.hub.conftest import serving_hub

pytestmark = pytest.mark.real
PASSWORD = "correct horse battery"


def jpeg() -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (30.0, 15.0, 12.5)}
    Image.new("RGB", (64, 48), (10, 200, 10)).save(out, "JPEG", exif=exif)
    return out.getvalue()


async def test_report_track_resolve_with_photo_rate_and_reopen(tmp_path: Path, community: Community,
                                                              mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url) as resident, httpx.AsyncClient(base_url=url) as chen, \
            httpx.AsyncClient(base_url=url) as boss:
        assert hub.accounts is not None
        hub.accounts.add_user("chen", PASSWORD, "volunteer")
        hub.accounts.add_user("zhang", PASSWORD, "supervisor")
        for client, name in ((chen, "chen"), (boss, "zhang")):
            assert (await client.post("/api/login", json={"name": name, "password": PASSWORD})).status_code == 200
        places = (await resident.get("/api/places")).json()
        assert {"id": "garden", "kind": "area", "name": "中心花园", "name_en": "Central garden",
                "building": None} in places
        suggestion = (await resident.post("/api/triage", json={"text": "花园垃圾桶满了"})).json()
        assert suggestion["category"] == "sanitation" and suggestion["emergency_numbers"] == []

        made = await resident.post("/api/requests", data={"channel": "phone", "text": "花园垃圾桶满了，很臭",
                                                          "place": "garden"}, files={"photo": ("a.jpg", jpeg())})
        assert made.status_code == 201, made.text
        r = made.json()
        assert r["category"] == "sanitation" and not r["queued"] and not r["emergency"]
        listed = await chen.get("/api/work-orders")
        assert listed.status_code == 200, listed.text
        [order] = listed.json()  # sanitation: open to volunteers
        assert order["category"] == "sanitation" and order["source"] == "phone"
        oid = order["id"]
        photos = await chen.get(f"/api/work-orders/{oid}/photos")
        assert photos.status_code == 200, photos.text
        [resident_photo] = photos.json()
        shown = await chen.get(resident_photo["url"])
        assert shown.headers["content-type"] == "image/jpeg" and b"Exif" not in shown.content
        assert (await chen.post(f"/api/work-orders/{oid}/claim", json={})).status_code == 200
        up = await chen.post("/api/order-photos", data={"order_id": str(oid)}, files={"photo": ("b.jpg", jpeg())})
        assert up.status_code == 201, up.text
        assert (await resident.get(up.json()["url"])).status_code == 401  # staff and volunteers only
        assert (await chen.post(f"/api/work-orders/{oid}/resolve", json={"note": "清理干净了"})).status_code == 200
        assert (await boss.post(f"/api/work-orders/{oid}/verify", json={})).status_code == 200

        view = (await resident.post("/api/requests/track", json={"ticket": r["ticket"], "pin": r["pin"]})).json()
        assert view["status"] == "verified" and view["can_rate"] and view["can_reopen"]
        assert {"by": "volunteer", "note": "清理干净了"}.items() <= view["replies"][-1].items()
        assert "chen" not in str(view)
        rated = await resident.post("/api/requests/rate", json={"ticket": r["ticket"], "pin": r["pin"], "stars": 5})
        assert rated.json()["rating"]["stars"] == 5
        again = await resident.post("/api/requests/rate", json={"ticket": r["ticket"], "pin": r["pin"], "stars": 1})
        assert again.status_code == 409 and again.json()["en"] == "already rated"
        reopened = await resident.post("/api/requests/reopen", json={"ticket": r["ticket"], "pin": r["pin"],
                                                                     "note": "又满了"})
        assert reopened.json()["status"] == "reopened"
        info = await resident.post("/api/requests/info", data={"ticket": r["ticket"], "pin": r["pin"], "text": ""},
                                   files={"photo": ("c.jpg", jpeg())})
        assert info.status_code == 200 and info.json()["additions"][0]["photo"]
        metrics = (await resident.get("/metrics")).text
        assert 'midbrain_hub_resident_requests_total{channel="phone"} 1.0' in metrics


async def test_emergencies_queue_and_staff_channels(tmp_path: Path, community: Community,
                                                    mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url) as kiosk, httpx.AsyncClient(base_url=url) as boss:
        assert hub.accounts is not None
        hub.accounts.add_user("zhang", PASSWORD, "supervisor")
        assert (await boss.post("/api/login", json={"name": "zhang", "password": PASSWORD})).status_code == 200
        fire = (await kiosk.post("/api/requests", json={"channel": "kiosk", "text": "车库里有车着火了",
                                                        "place": "garage"})).json()
        assert fire["emergency"] and [n["number"] for n in fire["emergency_numbers"]] == ["119", "120", "110"]
        [alert] = (await boss.get("/api/alerts")).json()
        assert alert["severity"] == "critical" and alert["device"] == "place:garage" and "着火" not in str(alert)
        [order] = (await boss.get("/api/work-orders")).json()
        assert order["severity"] == "critical"

        vague = (await kiosk.post("/api/requests", json={"text": "你好", "place": "b1"})).json()
        assert vague["queued"]
        [queued] = (await boss.get("/api/triage-queue")).json()
        assert (await kiosk.get("/api/triage-queue")).status_code == 401
        ok = await boss.post(f"/api/triage-queue/{queued['id']}", json={"category": "services", "urgency": "normal"})
        assert ok.status_code == 200 and ok.json()["work_order_id"] is not None

        refused = await kiosk.post("/api/requests", json={"channel": "counter", "text": "门坏了", "place": "b1"})
        assert refused.status_code == 403
        counter = await boss.post("/api/requests", json={"channel": "counter", "text": "门禁坏了", "place": "b2"})
        assert counter.status_code == 201
        [row] = [o for o in (await boss.get("/api/work-orders")).json() if o["source"] == "counter"]
        assert row["created_by"] == "zhang"


@pytest.mark.parametrize("case", ["bad"])
async def test_bad_input_gets_a_clear_4xx_and_stores_nothing(tmp_path: Path, community: Community,
                                                             mosquitto: MqttEndpoint, case: str) -> None:
    async with serving_hub(tmp_path, community, mosquitto,
                           residents=ResidentsSettings(submit_per_minute=12, pin_attempts=3)) as (url, hub), \
            httpx.AsyncClient(base_url=url) as web:
        assert hub.residents is not None
        post = web.post
        checks = [
            (await post("/api/requests", json={"text": "", "place": "b1"}), 422, "empty"),
            (await post("/api/requests", json={"text": "灯" * 1001, "place": "b1"}), 422, "longer than"),
            (await post("/api/requests", json={"text": "路灯坏了", "place": "b9"}), 422, "unknown place"),
            (await post("/api/requests", content=b'{"text": "\xff\xfe", "place": "b1"}',
                        headers={"content-type": "application/json"}), 400, "UTF-8"),
            (await post("/api/requests", content=b"[1, 2", headers={"content-type": "application/json"}), 400, "JSON"),
            (await post("/api/requests", json=["x"]), 422, "object"),
            (await post("/api/requests", json={"text": "路灯坏了", "place": "b1", "extra": 1}), 422, "extra"),
            (await post("/api/requests", data={"text": "路灯坏了", "place": "b1"},
                        files={"photo": ("x.jpg", b"<script>alert(1)</script>")}), 422, "JPEG"),
            (await post("/api/requests", content=b"x" * (6 * 1024 * 1024),
                        headers={"content-type": "application/json"}), 413, ""),
        ]
        for response, status, words in checks:
            assert response.status_code == status, response.text
            assert words in response.text
        assert hub.residents.store.counts()["requests"] == 0 and hub.workorders.find() == []  # type: ignore[union-attr]

        injected = await post("/api/requests", json={"text": '<img src=x onerror=alert(1)>门坏了"', "place": "b1"})
        r = injected.json()
        view = await post("/api/requests/track", json={"ticket": r["ticket"], "pin": r["pin"]})
        assert view.headers["content-type"] == "application/json" and view.json()["text"].startswith("<img")

        wrong = r["pin"][::-1] if r["pin"] != r["pin"][::-1] else "000001"
        answers = [await post("/api/requests/track", json={"ticket": t, "pin": p})
                   for t, p in ((r["ticket"], wrong), ("XH-20990101-0001", r["pin"]), ("AB-20261202-0001", r["pin"]))]
        assert {(a.status_code, a.text) for a in answers} == {(404, answers[0].text)}
        limited = await post("/api/requests/track", json={"ticket": r["ticket"], "pin": r["pin"]})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        for _ in range(20):
            last = await post("/api/requests", json={"text": "门坏了", "place": "b1"})
        assert last.status_code == 429
        metrics = (await web.get("/metrics")).text
        assert "midbrain_hub_resident_pin_failures_total 4.0" in metrics
        assert 'midbrain_hub_resident_requests_refused_total{reason="empty"} 1.0' in metrics
