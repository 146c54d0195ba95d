"""Everything the bridge sends during a demo, scanned for personal data and for any field
not on the egress allow-list. The city platform records each batch request as received
(headers and raw body); a kiosk meanwhile reports a resident's request with the
resident's name, mobile number, ID card number and room in it, which the hub stores."""

import base64
import gzip
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_bridge.delivery import BATCHES_PATH
from cloud_bridge.privacy import ALLOWED_MEANS
from contract.city import DOWNLINK_ACKS_PATH, DOWNLINK_PATH, egress_allow_list
from contract.downlink import AckBatch
from midbrain.broker import free_port
from tests.conftest import DEMO_CONFIG, mosquitto_client

pytestmark = pytest.mark.real

_EDGE = r"(?<![0-9A-Za-z])", r"(?![0-9A-Za-z])"
PATTERNS = {
    "mainland mobile number": re.compile(_EDGE[0] + r"1[3-9]\d{9}" + _EDGE[1]),
    "resident ID card number": re.compile(_EDGE[0] + r"\d{17}[\dXx]" + _EDGE[1]),
    "room number": re.compile(r"\d+\s*号楼\s*\d+|\d{3,4}\s*室|[Rr]oom\s*\d+"),
    "resident name": re.compile("王小明"),
}
# Mappings whose keys are data (a metric, an alert kind, a category), not fields.
MAPS = {"summaries[].cells[].means", "summaries[].alerts", "summaries[].events", "summaries[].requests",
        "summaries[].alerts_by_severity", "summaries[].environment", "summaries[].hub.points_by_quality"}

RESIDENT_REQUEST = {"v": 1, "seq": 1, "boot": "scan-1", "ts": 0.0, "device": "k1-kiosk-01", "event": "service_request",
                    "severity": "info", "data": {"category": "repair", "name": "王小明", "phone": "13812345678",
                                                 "id_card": "330106199001011234", "room": "3号楼502室"}}


def _identifiers() -> set[str]:
    """Device and gateway ids and names of the demo community: none may leave."""
    cfg = tomllib.loads(DEMO_CONFIG.read_text())
    out: set[str] = set()
    for section in ("devices", "gateways"):
        for item in cfg["community"].get(section, []):
            out.add(item["id"])
            if item.get("name"):
                out.add(item["name"])
    for path in (DEMO_CONFIG.parent / "devices").glob("*.toml"):
        for device in tomllib.loads(path.read_text()).get("devices", []):
            out.add(device["id"])
            out.update([device["name"]] if device.get("name") else [])
    return out


def _fields(value: object, path: str, allowed: frozenset[str], off: set[str]) -> None:
    if isinstance(value, dict):
        if path in MAPS:
            if path.endswith((".means", ".environment")):
                off.update(f"{path}.{k}" for k in value if k not in ALLOWED_MEANS)
            elif path.endswith(".points_by_quality"):  # the community's counts by level, nothing else
                off.update(f"{path}.{k}" for k in value if k not in ("good", "uncertain", "bad"))
            return
        for key, inner in value.items():
            child = f"{path}.{key}" if path else key
            if child not in allowed:
                off.add(child)
            _fields(inner, child, allowed, off)
    elif isinstance(value, list):
        for inner in value:
            _fields(inner, f"{path}[]", allowed, off)


def scan_capture(capture: Path) -> tuple[list[dict[str, Any]], list[str], set[str], int]:
    """Every request the city recorded: (requests, personal data found, fields off the
    allow-list, body bytes as sent). Batches are held to the batch allow-list, answers to
    the city's items to theirs; a request to the downlink (a signed question) has no body;
    any other body is off the list entire."""
    requests = [json.loads(line) for line in capture.read_text().splitlines()]
    lists = {BATCHES_PATH: egress_allow_list(), DOWNLINK_ACKS_PATH: egress_allow_list(AckBatch)}
    identifiers = _identifiers()
    assert "b1-wm-101" in identifiers and "1号楼101水表" in identifiers  # the scan knows what to look for
    found: list[str] = []
    off: set[str] = set()
    sent_bytes = 0
    for r in requests:
        raw = base64.b64decode(r["body_b64"])
        sent_bytes += len(raw)
        body = gzip.decompress(raw) if r["headers"].get("content-encoding") == "gzip" else raw
        text = body.decode() + "\n" + "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        for what, pattern in PATTERNS.items():
            found += [f"{what}: {m.group()}" for m in pattern.finditer(text)]
        text += "\n" + r["path"]
        found += [f"identifier: {i}" for i in identifiers if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text)]
        path = r["path"].split("?")[0]
        if r["method"] == "GET" and path == DOWNLINK_PATH and not body:
            continue
        _fields(json.loads(body), "", lists.get(path, frozenset()), off)
    return requests, found, off, sent_bytes


def test_nothing_personal_and_nothing_off_the_allow_list_leaves_during_a_demo(tmp_path: Path) -> None:
    capture = tmp_path / "egress.jsonl"
    mqtt_port, city_port = free_port(), free_port()
    env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(mqtt_port), "MIDBRAIN_HUB__HTTP_PORT": str(free_port()),
           "MIDBRAIN_CITY__HTTP_PORT": str(city_port), "MIDBRAIN_CITY__CAPTURE": str(capture),
           "MIDBRAIN_HUB__SUMMARY_INTERVAL_S": "5"}
    proc = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "demo", "--config", str(DEMO_CONFIG),
                             "--duration", "45", "--report", str(tmp_path / "r.json"), "--workdir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        time.sleep(20)  # the hub is up and summarising
        for seq in range(1, 4):  # a few, so that the request count could reach a cell of its own
            event = {**RESIDENT_REQUEST, "seq": seq, "ts": time.time()}
            subprocess.run([mosquitto_client("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(mqtt_port), "-q", "1",
                            "-t", "mb/v1/xihu-demo/gw-kiosk/k1-kiosk-01/event", "-m",
                            json.dumps(event, ensure_ascii=False)], check=True, timeout=10)
        # A notice from the city, so that the hub's answer to it goes up and is scanned too.
        issued = httpx.post(f"http://127.0.0.1:{city_port}/api/v1/downlink", timeout=10, json={
            "community": "xihu-demo", "notice": {"title": "停水通知"}},
            headers={"authorization": "Bearer demo-operator-token-not-secret"})
        assert issued.status_code == 201, issued.text
        out, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"], report

    requests, found, off, sent_bytes = scan_capture(capture)
    assert sum(r["path"] == BATCHES_PATH for r in requests) >= 5  # summaries every 5 s for most of 45 s
    assert any(r["path"] == DOWNLINK_ACKS_PATH for r in requests)  # the hub's answer to the notice
    assert found == [] and off == set(), (found, off)
    assert sent_bytes > 0
    # The personal data really was in the community: the hub stored the request as sent.
    rows = sqlite3.connect(tmp_path / "run" / "hub.sqlite3").execute(
        "SELECT data FROM events WHERE event = 'service_request' AND data LIKE '%13812345678%'").fetchall()
    assert len(rows) == 3
