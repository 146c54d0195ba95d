"""The staff page in a real headless Chromium: devices, online state, alerts, language."""

import asyncio
import math
import re
import shutil
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Birth, Death, DeviceInfo, Telemetry
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from hub.settings import NormalsSettings
from simulators.pty_pms5003 import PtyPms5003
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"
PASSWORD = "correct horse battery"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def log_in(page: Page, name: str) -> None:
    """Through the page's own form, as staff do: nothing but the form shows before it."""
    await expect(page.locator("#console")).to_be_hidden()
    await page.fill("#login-name", name)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login")
    await expect(page.locator("#who")).to_be_visible()


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
        seq += 1  # a reading its sensor could not have taken: shown, with the reason, and never alarmed
        await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-03"), encode(Telemetry(
            seq=seq, boot="r1", ts=now, device="b1-th-03", metrics={"temperature": 150.0, "humidity": 40.0},
            quality={"temperature": "out_of_range"})), qos=1)
        await wait_until(lambda: hub.stats()["stored"] == 32)
        assert await hub.scoring.score_now() >= 1
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
        async with httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
            windows = (await http.get("/api/windows", params={"device": "b1-th-02", "metric": "temperature"})).json()
        # The last 60 s at scoring time: the reading stamped exactly 60 s before `now` has left it.
        assert windows[0]["count"] == 29 and windows[0]["max"] == 48.0 and windows[0]["kind"] == "fire"
        assert windows[0]["min"] == 24.03 and windows[0]["score"] >= 0.8

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{url}/staff")
            await log_in(page, "wang")
            row = page.locator('tr[data-device="b1-th-01"]')
            await expect(row).to_contain_text("在线")
            await expect(row).to_contain_text("温度 21.5 °C")
            await expect(page.locator("#alerts tbody")).to_contain_text("b1-th-02")
            await expect(page.locator("#alerts tbody")).to_contain_text("紧急")
            bad = page.locator('tr[data-device="b1-th-03"] [data-quality="out_of_range"]')
            await expect(bad).to_have_text("温度 150 °C (数据异常: 超出量程)")
            await page.screenshot(path=str(tmp_path / "staff-zh.png"))

            # The gateway dies (its Last Will): the page shows it within its refresh.
            await gw.publish(topics.gateway_state(C, "gw-b1"), encode(Death(boot="r1")), qos=1, retain=True)
            await expect(row).to_contain_text("离线", timeout=10_000)

            await page.click("#lang")
            await expect(page.locator("h1")).to_have_text("Community mid-brain · Staff console")
            await expect(row).to_contain_text("offline")
            await expect(row).to_contain_text("Temperature 21.5 °C")
            await expect(bad).to_have_text("Temperature 150 °C (bad: out of range)")
            await expect(page.locator("#alerts tbody")).to_contain_text("critical")

            await page.select_option("#f-building", "b2")
            await expect(page.locator("#devices tbody tr").first).to_contain_text("b2-")
            buildings = await page.locator("#devices tbody tr td:nth-child(3)").all_inner_texts()
            assert buildings and set(buildings) == {"b2"}
            await browser.close()
        assert hub.store is not None
        alerts = {(a["device"], a["metric"], a["kind"]) for a in hub.alerting.log.latest(10)}
        assert alerts == {("b1-th-02", "temperature", "fire")}


async def test_staff_log_in_see_a_device_go_offline_and_claim_and_resolve_its_alerts_work_order(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    """The whole loop in a browser: a real edge agent reads a PMS5003 on a pseudo-terminal;
    a supervisor's threshold turns its reading into an alert and a work order; a staff
    member logs in, claims, starts and resolves it; the sensor stops and the page says so."""
    sensor = PtyPms5003(seed=7, interval_s=0.3).start()
    agent = EdgeAgent(community, "gw-b1", mosquitto, EdgeSettings(state_dir=tmp_path / "edge", birth_wait_s=0.2),
                      serial_ports={"b1-aq-01": sensor.port})
    agent.devices.clear()  # only the serial sensor
    stop = asyncio.Event()
    try:
        async with serving_hub(tmp_path, community, mosquitto, offline_after_s=3.0) as (url, hub), \
                httpx.AsyncClient(base_url=url) as boss:
            assert hub.accounts is not None
            hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
            hub.accounts.add_user("zhang", PASSWORD, "supervisor", "张主管")
            run = asyncio.create_task(agent.run(stop))
            await wait_until(lambda: hub.registry.online(hub.registry.devices["b1-aq-01"]), timeout=15)
            assert (await boss.post("/api/login", json={"name": "zhang", "password": PASSWORD})).status_code == 200
            r = await boss.put("/api/devices/b1-aq-01/desired", json={"thresholds": {"pm2_5": {"high": 0.5}}})
            assert r.status_code == 200

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
                page = await browser.new_page()
                await page.goto(f"{url}/staff")
                await expect(page.locator("#orders-hint")).to_be_visible()  # no board before login
                await page.fill("#login-name", "wang")
                await page.fill("#login-password", "wrong password")
                await page.click("#login")
                await expect(page.locator("#login-error")).to_contain_text("用户名或密码错误")
                await page.fill("#login-password", PASSWORD)
                await page.click("#login")
                await expect(page.locator("#who-name")).to_have_text("wang (物业人员)")

                card = page.locator('.column[data-status="open"] [data-order]').first
                await expect(card).to_contain_text("PM2.5", timeout=15_000)
                order_id = await card.get_attribute("data-order")
                card = page.locator(f'[data-order="{order_id}"]')
                await card.locator('button[data-action="claim"]').click()
                await expect(card).to_have_attribute("data-state", "claimed")
                await expect(card.locator(".assignee")).to_have_text("wang")
                await card.locator('button[data-action="start"]').click()
                await expect(card).to_have_attribute("data-state", "in_progress")
                await card.locator(".note").fill("更换了滤网，复测正常")
                await page.wait_for_timeout(1500)  # live updates meanwhile must not wipe the note being typed
                await card.locator('button[data-action="resolve"]').click()
                await expect(card).to_have_attribute("data-state", "resolved")
                await expect(card.locator('button[data-action="verify"]')).to_have_count(0)  # a supervisor's

                row = page.locator('tr[data-device="b1-aq-01"]')
                await expect(row).to_contain_text("在线")
                await row.click()
                await expect(page.locator("#chart-line")).to_have_count(1)
                await page.screenshot(path=str(tmp_path / "staff-board.png"), full_page=True)

                sensor.stop()  # the sensor goes quiet: the agent and then the hub notice
                await expect(row).to_contain_text("离线", timeout=15_000)
                await browser.close()
            order = (await boss.get(f"/api/work-orders/{order_id}")).json()
            stop.set()
            await asyncio.wait_for(run, 20)
    finally:
        sensor.stop()
    assert order["status"] == "resolved" and order["category"] == "environment"
    assert [(e["actor"], e["action"]) for e in order["events"]][-3:] == [
        ("wang", "claim"), ("wang", "start"), ("wang", "resolve")]
    assert order["events"][-1]["note"] == "更换了滤网，复测正常"


async def test_a_city_notice_appears_on_the_open_staff_page_and_a_forgery_does_not(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    from contract.downlink import DownlinkItem, Notice, envelope, new_signing_key, sign_item

    private, public = new_signing_key()
    async with serving_hub(tmp_path, community, mosquitto, city_public_key=public) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as bridge_side, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = await browser.new_page()
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
        await page.goto(f"{url}/staff")
        await log_in(page, "wang")
        await expect(page.locator("#devices tbody tr").first).to_be_visible()
        assert not await page.locator("#notices-panel").is_visible()

        def item(seq: int, title: str) -> DownlinkItem:
            return DownlinkItem(seq=seq, community=C, issued_at=time.time(),
                                body=Notice(level="emergency", title=title, body="请住户远离地下车库"))

        # As the bridge hands them over: one signed by the city, one by somebody else.
        await bridge_side.publish(topics.city_downlink(C), envelope(sign_item(new_signing_key()[0], item(1, "假通知"))),
                                  qos=1)
        await bridge_side.publish(topics.city_downlink(C), envelope(sign_item(private, item(2, "台风红色预警"))), qos=1)
        notice = page.locator("#notices li")
        await expect(notice).to_contain_text("台风红色预警", timeout=10_000)  # live, without a reload
        await expect(notice).to_contain_text("紧急")
        await expect(notice).to_have_count(1)
        await page.click("#lang")
        await expect(page.locator("#notices-panel h2")).to_have_text("City notices")
        await expect(notice).to_contain_text("emergency")
        await page.screenshot(path=str(tmp_path / "staff-notice.png"))
        await browser.close()
        assert hub.downlink is not None and hub.downlink.counts["refused"] == 1


async def test_what_left_the_community_is_shown_on_the_hub_and_a_tampered_log_shows(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    import sqlite3

    from midbrain.broker import free_port
    from tests.city_and_bridge import publish_summaries, running_bridge, serving_city

    bridge_port = free_port()
    async with serving_city(tmp_path, {C: b"k"}) as (city, _), running_bridge(
            C, mosquitto, outbox=tmp_path / "outbox.sqlite3", community_key="k", http_port=bridge_port,
            city_url=city.url) as bridge:
        await publish_summaries(mosquitto, C, range(3))
        await wait_until(lambda: bridge.stats()["acknowledged"] == 3, timeout=15)
        entries = len(bridge.outbox.egress_log(100))
        async with serving_hub(tmp_path, community, mosquitto, bridge_url=f"http://127.0.0.1:{bridge_port}") as (url, hub), \
                async_playwright() as pw:
            assert hub.accounts is not None
            hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{url}/staff")
            await log_in(page, "wang")
            await page.click("#egress-link")
            # The bridge may log more while the staff member logs in (its next request to the
            # city): the page shows the chain as it was when it loaded, all of it verified.
            await expect(page.locator("#status")).to_have_text(re.compile(r"^签名链完整：\d+ 条记录全部核验通过$"))
            shown = int(re.findall(r"\d+", await page.locator("#status").inner_text())[0])
            assert shown >= entries
            await expect(page.locator("#log tbody tr")).to_have_count(shown)
            await expect(page.locator("#log tbody tr").filter(has_text=f"{city.url}/api/v1/batches").first).to_be_visible()
            # axe finds nothing on the egress page in Chinese; the keyboard reaches the way back
            # and the language switch, in that order, and Enter switches; axe again in English.
            from axe_playwright_python.async_playwright import Axe

            found = {"zh": [(v["id"], v["impact"]) for v in (await Axe().run(page)).response["violations"]]}
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.getAttribute('href')") == "/staff"
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.id") == "lang"
            await page.keyboard.press("Enter")
            await expect(page.locator("#status")).to_have_text(f"Chain intact: all {shown} entries verified")
            found["en"] = [(v["id"], v["impact"]) for v in (await Axe().run(page)).response["violations"]]
            assert found == {"zh": [], "en": []}, found

            # Someone edits the log after the fact: the page says so, and where.
            db = sqlite3.connect(tmp_path / "outbox.sqlite3")
            db.execute("UPDATE egress_log SET bytes = bytes + 1 WHERE seq = 1")
            db.commit()
            db.close()
            await page.reload()
            await expect(page.locator("#status")).to_have_text("核验失败：第 1 条（hash）")
            await browser.close()


async def test_the_staff_page_is_axe_clean_and_usable_from_the_keyboard_in_both_languages(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    """axe-core (as axe-playwright-python ships it) finds nothing on the page, a value marked
    bad included, in Chinese and in English; a keyboard alone reaches every control in
    order, logs in and switches the language. A device's learned normal shows its warm-up
    and its false-alarm budget in its row."""
    from axe_playwright_python.async_playwright import Axe

    normals = NormalsSettings(enabled=True, warmup_readings=50, warmup_min_s=0)
    async with serving_hub(tmp_path, community, mosquitto, normals=normals) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as gw:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
        await gw.publish(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=time.time(), boot="r1", seq=0,
                                                                         software="test")), qos=1, retain=True)
        await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-03"), encode(Telemetry(
            seq=1, boot="r1", ts=time.time(), device="b1-th-03", metrics={"temperature": 150.0, "humidity": 40.0},
            quality={"temperature": "out_of_range"})), qos=1)
        for seq in (2, 3, 4):
            await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(Telemetry(
                seq=seq, boot="r1", ts=time.time() - 10 + seq, device="b1-th-01", metrics={"temperature": 21.0 + seq,
                                                                               "humidity": 40.0})), qos=1)
        await wait_until(lambda: hub.stats()["stored"] == 4)
        await hub.scoring.score_now()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"{url}/staff")
            found = {"login": [(v["id"], v["impact"]) for v in (await Axe().run(page)).response["violations"]]}
            # By keyboard alone: the login form's controls in order, then log in.
            assert await tab_order(page, 5) == ["login-name", "login-password", "login", "egress-link", "lang"]
            for _ in range(4):
                await page.keyboard.press("Shift+Tab")
            assert await page.evaluate("document.activeElement.id") == "login-name"
            await page.keyboard.type("wang")
            await page.keyboard.press("Tab")
            await page.keyboard.type(PASSWORD)
            await page.keyboard.press("Enter")
            await expect(page.locator("#who")).to_be_visible()
            await expect(page.locator('[data-quality="out_of_range"]')).to_be_visible()
            normal = page.locator('tr[data-device="b1-th-01"] td.normal')
            no_normal = page.locator('tr[data-device="b1-door-01"] td.normal')  # a class not learned
            for lang in ("zh-CN", "en"):
                assert await page.get_attribute("html", "lang") == lang
                if lang == "zh-CN":
                    await expect(normal).to_have_text("学习中 3/50 · 误报预算 1 次/周 · 已用 0")
                    await expect(page.locator("#devices thead")).to_contain_text("常态模型")
                else:
                    await expect(normal).to_have_text("learning 3/50 · False-alarm budget 1/week · spent 0")
                    await expect(page.locator("#devices thead")).to_contain_text("Learned normal")
                await expect(no_normal).to_have_text("—")
                found[lang] = [(v["id"], v["impact"]) for v in (await Axe().run(page)).response["violations"]]
                if lang == "zh-CN":  # every control of the console in order, then the language
                    await page.evaluate("document.activeElement.blur()")
                    assert await tab_order(page, 5) == ["logout", "egress-link", "lang", "f-building", "f-class"]
                    await page.keyboard.press("Shift+Tab")
                    await page.keyboard.press("Shift+Tab")
                    await page.keyboard.press("Enter")
                    await expect(page.locator("h1")).to_have_text("Community mid-brain · Staff console")
            await browser.close()
    assert found == {"login": [], "zh-CN": [], "en": []}


async def tab_order(page: Page, n: int) -> list[str]:
    """The ids of the next ``n`` elements the Tab key reaches."""
    order = []
    for _ in range(n):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate("document.activeElement.id"))
    return order
