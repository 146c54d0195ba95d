"""What a browser gets from the hub: a page on another port of the same host cannot act with a
staff member's cookie (SameSite=Strict does not stop it: same host is same site), the
headers that keep scripts and framing in check, the Secure cookie flag over HTTPS, and API
docs off unless asked for. In Chromium where a browser's behaviour is the point."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.api import STATIC
from servicekit.http import HttpServer
from tests.hub.conftest import api_token, serving_hub
from tests.hub.test_staff_page import CHROMIUM_ARGS, chromium

pytestmark = pytest.mark.real
PASSWORD = "correct horse battery"


@asynccontextmanager
async def attacker_site(hub_url: str) -> AsyncIterator[str]:
    """Another web server on another port of the same host, whose page posts to the hub."""
    page = f"""<!doctype html><html lang="en"><title>cheap flights</title><script>
    fetch("{hub_url}/api/models/reload", {{ method: "POST", mode: "no-cors", credentials: "include" }})
      .then(() => {{ document.title = "sent"; }}, () => {{ document.title = "failed"; }});
    </script></html>"""

    async def index(request: object) -> HTMLResponse:
        return HTMLResponse(page)

    import asyncio

    server = HttpServer(Starlette(routes=[Route("/", index)]), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    await server.started()
    try:
        yield server.url
    finally:
        server.stop()
        await task


async def test_a_page_on_another_port_cannot_act_with_the_staff_cookie(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), attacker_site(url) as evil, \
            async_playwright() as pw:
        assert hub.accounts is not None
        hub.accounts.add_user("root", PASSWORD, "admin")
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{url}/staff")
        await page.fill("#login-name", "root")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login")  # a same-origin POST: accepted
        await expect(page.locator("#who")).to_be_visible()
        await page.goto(evil)
        await expect(page).to_have_title("sent")
        await browser.close()
        async with httpx.AsyncClient(base_url=url) as http:
            metrics = (await http.get("/metrics")).text
            trail = [t["action"] for t in hub.accounts.audit_trail()]
            assert "model.reload" not in trail and "login" in trail
            assert "midbrain_hub_cross_origin_refused_total 1.0" in metrics

            # The same with a plain HTTP client: a foreign Origin or Referer with the cookie is
            # refused; the hub's own origin, or a client that sends neither, is not.
            login = await http.post("/api/login", json={"name": "root", "password": PASSWORD})
            cookie = {"Cookie": f"mb_session={login.cookies['mb_session']}"}
            own = url.removeprefix("http://")
            for headers, status in (({"Origin": evil}, 403), ({"Referer": f"{evil}/"}, 403), ({"Origin": "null"}, 403),
                                    ({"Origin": f"http://{own}"}, 200), ({"Referer": f"{url}/staff"}, 200), ({}, 200)):
                r = await http.post("/api/models/reload", headers={**cookie, **headers})
                assert r.status_code == status, (headers, r.text)
            assert "不接受来自其他站点的请求" in (await http.post("/api/logout", headers={**cookie, "Origin": evil})).text


async def test_every_response_carries_a_strict_csp_and_the_pages_have_no_inline_script(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    for page in STATIC.glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), page.name  # every script from a file
        assert not re.search(r"\son[a-z]+=", html) and "<style" not in html, page.name
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff")
        for path in ("/staff", "/egress", "/static/staff.js", "/api/devices", "/healthz"):
            h = (await http.get(path)).headers
            csp = h["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
            assert (h["referrer-policy"], h["x-content-type-options"], h["x-frame-options"]) == (
                "same-origin", "nosniff", "DENY"), path
        # In Chromium, under that policy, the page works and breaks no rule of it.
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            await page.goto(f"{url}/staff")
            await page.fill("#login-name", "wang")
            await page.fill("#login-password", PASSWORD)
            await page.click("#login")
            await expect(page.locator("#devices tbody tr").first).to_be_visible()
            await page.click("#lang")
            await expect(page.locator("h1")).to_have_text("Community mid-brain · Staff console")
            await page.goto(f"{url}/egress")
            await expect(page.locator("#status")).not_to_be_empty()
            await browser.close()
        assert violations == []


async def test_the_session_cookie_is_secure_over_https(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    """Behind a TLS terminator on this host (which uvicorn trusts for X-Forwarded-Proto), or
    with hub.cookie_secure set, the session cookie only travels over HTTPS."""
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff")
        body = {"name": "wang", "password": PASSWORD}
        plain = (await http.post("/api/login", json=body)).headers["set-cookie"]
        tls = (await http.post("/api/login", json=body, headers={"X-Forwarded-Proto": "https"})).headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Secure" not in plain
    assert "HttpOnly" in tls and "Secure" in tls
    async with serving_hub(tmp_path / "b", community, mosquitto, cookie_secure=True) as (url, hub), \
            httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff")
        assert "Secure" in (await http.post("/api/login", json=body)).headers["set-cookie"]


async def test_api_docs_are_off_unless_asked_for(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await http.get(path)).status_code == 404, path
    async with serving_hub(tmp_path / "dev", community, mosquitto, api_docs=True) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        assert (await http.get("/docs")).status_code == 200  # development only: Swagger UI from its CDN
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert {"/healthz", "/metrics", "/api/devices", "/api/telemetry", "/api/login"} <= set(paths)
