"""The staff page in a real headless Chromium: devices, online state, alerts, language."""

import math
import shutil
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
from playwright.async_api import async_playwright, expect

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Birth, Death, DeviceInfo, Telemetry
from contract.topology import Community
from tests.conftest import wait_until
from tests.hub.conftest import serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is required: run the README's test command, which installs it")
    return path


async def test_staff_see_devices_go_offline_and_alerts_in_both_languages(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as gw:
        devices = community.devices_of("gw-b1")
        await gw.publish(topics.gateway_state(C, "gw-b1"), encode(Birth(
            ts=time.time(), boot="r1", seq=0, software="test",
            devices=tuple(DeviceInfo.model_validate({"id": d.id, "class": d.device_class}) for d in devices))),
            qos=1, retain=True)
        now = time.time()
        seq = 0
        for i in range(30):  # a fire-like rise in the switch room, one reading every 2 s
            seq += 1
            await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-02"), encode(Telemetry(
                seq=seq, boot="r1", ts=now - 60 + 2 * i, device="b1-th-02",
                metrics={"temperature": 24.0 + (0.03 * i if i < 15 else 1.6 * (i - 14)), "humidity": 45.0 + 0.4 * math.sin(i)})), qos=1)
        seq += 1
        await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(Telemetry(
            seq=seq, boot="r1", ts=now, device="b1-th-01", metrics={"temperature": 21.5})), qos=1)
        await wait_until(lambda: hub.stats()["stored"] == 31)
        assert await hub.score_now() >= 1
        async with httpx.AsyncClient(base_url=url) as http:
            windows = (await http.get("/api/windows", params={"device": "b1-th-02", "metric": "temperature"})).json()
        # The last 60 s at scoring time: the reading stamped exactly 60 s before `now` has left it.
        assert windows[0]["count"] == 29 and windows[0]["max"] == 48.0 and windows[0]["kind"] == "fire"
        assert windows[0]["min"] == 24.03 and windows[0]["score"] >= 0.8

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{url}/staff")
            row = page.locator('tr[data-device="b1-th-01"]')
            await expect(row).to_contain_text("在线")
            await expect(row).to_contain_text("温度 21.5 °C")
            await expect(page.locator("#alerts tbody")).to_contain_text("b1-th-02")
            await expect(page.locator("#alerts tbody")).to_contain_text("紧急")
            await page.screenshot(path=str(tmp_path / "staff-zh.png"))

            # The gateway dies (its Last Will): the page shows it within its refresh.
            await gw.publish(topics.gateway_state(C, "gw-b1"), encode(Death(boot="r1")), qos=1, retain=True)
            await expect(row).to_contain_text("离线", timeout=10_000)

            await page.click("#lang")
            await expect(page.locator("h1")).to_have_text("Community mid-brain · Staff console")
            await expect(row).to_contain_text("offline")
            await expect(row).to_contain_text("Temperature 21.5 °C")
            await expect(page.locator("#alerts tbody")).to_contain_text("critical")

            await page.select_option("#f-building", "b2")
            await expect(page.locator("#devices tbody tr").first).to_contain_text("b2-")
            buildings = await page.locator("#devices tbody tr td:nth-child(3)").all_inner_texts()
            assert buildings and set(buildings) == {"b2"}
            await browser.close()
        assert hub.store is not None
        alerts = {(a["device"], a["metric"], a["kind"]) for a in hub.store.alerts(10)}
        assert alerts == {("b1-th-02", "temperature", "fire")}
