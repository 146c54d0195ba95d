"""`midbrain demo` end to end, as a user runs it, on both brokers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from midbrain.broker import free_port
from tests.conftest import DEMO_CONFIG


def _own_ports() -> dict[str, str]:
    """Free ports for this demo, so that concurrent runs on one machine never race for the defaults."""
    return {**os.environ, "COLUMNS": "200", "MIDBRAIN_MQTT__PORT": str(free_port()),
            "MIDBRAIN_HUB__HTTP_PORT": str(free_port()), "MIDBRAIN_CITY__HTTP_PORT": str(free_port())}

pytestmark = pytest.mark.real


def _run_demo(tmp_path: Path, broker: str, duration: int,
              disruptions: tuple[tuple[float, str, signal.Signals], ...] = (), ctrl_c: bool = False) -> dict:
    """Run the demo for ``duration`` s: by ``--duration``, or by Ctrl-C (SIGINT) when ``ctrl_c``."""
    report = tmp_path / "r.json"
    workdir = tmp_path / "run"
    stop_by = [] if ctrl_c else ["--duration", str(duration)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "midbrain.cli", "demo", "--config", str(DEMO_CONFIG), *stop_by,
         "--report", str(report), "--broker", broker, "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_own_ports(),
        start_new_session=True)  # its own process group, as in a terminal
    started = time.monotonic()
    killed = []
    try:
        for at, service, sig in disruptions:  # services that die or stop mid-demo
            while time.monotonic() - started < at:
                time.sleep(0.2)
            pid = json.loads((workdir / "pids.json").read_text())[service]
            os.kill(pid, sig)
            killed.append(pid)
        if ctrl_c:
            time.sleep(duration)
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group
        out, _ = proc.communicate(timeout=duration + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text[-4000:]
    assert "staff page" in text and "/staff" in text
    data = json.loads(report.read_text())
    data["_killed"] = killed
    return data


def _check_stages(report: dict, *, outside_kinds: frozenset[str] = frozenset()) -> None:
    """``outside_kinds``: the kinds of alert a run's own disruptions may raise beside the
    scenario's (none, unless the test takes the broker away)."""
    stages = report["stages"]
    zero_allowed = {"dead_lettered", "lost", "summary_revisions_by_hub", "summaries_superseded"}
    assert all(v > 0 for k, v in stages.items() if k not in zero_allowed), stages
    assert stages["lost"] == 0, stages
    # Exactly what was published, but for readings a simulator sent again after its PUBACK
    # did not come (QoS 1 is at least once), each of which may be there twice.
    extra = stages["stored"] + stages["dead_lettered"] - stages["published_by_simulators"]
    assert 0 <= extra <= report["details"]["readings_sent_again_by_simulators"], (extra, report["details"])
    assert stages["summaries_published_by_hub"] == stages["summaries_produced"]
    assert stages["summaries_produced"] - stages["summaries_superseded"] == stages["summaries_acknowledged"]
    # The city keeps one summary per key: a revision replaces the one it had.
    assert stages["summaries_at_city"] == stages["summaries_published_by_hub"] - stages["summary_revisions_by_hub"]
    assert report["ok"] is True
    # Every alert comes from a fault the scenario injected: a service stopped or restarted by
    # the demo (its own shutdown included) raises none.
    alerts = report["details"]["alerts"]
    assert {a["kind"] for a in alerts["outside_the_scenario"]} <= outside_kinds, alerts
    assert stages["alerts_raised"] > 0, alerts
    assert sum(alerts["by_kind"].values()) == stages["alerts_raised"] + len(alerts["outside_the_scenario"]), alerts


def test_sixty_second_demo_on_mosquitto_through_city_kills_and_broker_and_hub_restarts(tmp_path: Path) -> None:
    report = _run_demo(tmp_path, "mosquitto", 60, disruptions=(
        (18.0, "city", signal.SIGKILL), (27.0, "broker", signal.SIGTERM), (36.0, "city", signal.SIGKILL),
        (44.0, "hub", signal.SIGTERM)))
    # A broker taken away speaks its clients' Last Wills: devices behind every gateway may be
    # alarmed offline, and the report lists those alerts apart from the scenario's.
    _check_stages(report, outside_kinds=frozenset({"offline"}))
    assert report["broker"] == "mosquitto"
    assert report["details"]["restarts"] == {"city": 2, "broker": 1, "hub": 1}
    # Exactly once at the city: one row per summary key (primary key), none missing.
    import sqlite3

    db = sqlite3.connect(tmp_path / "run" / "city.sqlite3")
    keys = [k for (k,) in db.execute("SELECT key FROM summaries WHERE community = 'xihu-demo'")]
    assert len(keys) == len(set(keys)) == report["stages"]["summaries_produced"]


def test_demo_on_the_embedded_broker_with_an_edge_restarted_stopped_by_ctrl_c(tmp_path: Path) -> None:
    report = _run_demo(tmp_path, "amqtt", 35, ctrl_c=True, disruptions=((15.0, "edge-gw-b1", signal.SIGTERM),))
    _check_stages(report)
    assert report["broker"] == "amqtt"
    assert report["details"]["restarts"] == {"edge-gw-b1": 1}


def test_killing_the_supervisor_leaves_no_service_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "midbrain.cli", "demo", "--config", str(DEMO_CONFIG), "--workdir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=_own_ports())
    try:
        deadline = time.monotonic() + 60
        while not (workdir / "pids.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "demo did not start"
            time.sleep(0.2)
        pids = json.loads((workdir / "pids.json").read_text())
        assert len(pids) == 8  # broker, city, hub, bridge, simulators, three edges
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie is gone for our purpose: it only waits to be reaped by init
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [name for name, p in pids.items() if alive(p)]
