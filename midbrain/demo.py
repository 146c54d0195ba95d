"""``midbrain demo``: a whole community on one machine, each service in its own process.

Start order: broker, city platform, hub, bridge, device simulators, edge agents.
Stop order is the data's direction, so that nothing in flight is cut off: simulators,
then edges (they drain their queues), then the hub (it flushes and publishes its last
summary), then the bridge (it delivers what it holds), then the city, then the broker.
"""

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console

from midbrain.broker import BrokerProcess, port_or_free, spawn, wait_for_port
from midbrain.config import MidbrainConfig, load_config

log = logging.getLogger(__name__)


def cli_hint() -> str:
    """How to run ``midbrain`` after set-up: the venv's script, relative when it is under the cwd."""
    script = Path(sys.executable).parent / "midbrain"
    if not script.exists():
        return "midbrain --help"
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return f"{script} --help   (or . {script.parent / 'activate'}, then midbrain --help)"


def attribute_alerts(alerts: list[dict[str, Any]], cfg: MidbrainConfig) -> dict[str, Any]:
    """The hub's alerts by kind, and by the scenario's fault on their device (``device kind``,
    as in ``simulate.faults``); alerts on a device with no fault are listed on their own."""
    faults = {f.device: f"{f.device} {f.kind}" for f in cfg.simulate.faults}
    by_kind: dict[str, int] = {}
    by_fault = {name: 0 for name in faults.values()}
    outside = []
    for a in alerts:
        by_kind[a["kind"]] = by_kind.get(a["kind"], 0) + 1
        if a["device"] in faults:
            by_fault[faults[a["device"]]] += 1
        else:
            outside.append({k: a.get(k) for k in ("device", "metric", "kind", "severity", "raised_at")})
    return {"by_kind": dict(sorted(by_kind.items())), "by_fault": by_fault, "outside": outside}


class Service:
    """One child process of the demo, with its own log file and process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.stats_dir = workdir / "stats"
        self.env = env
        self.log_path = workdir / "logs" / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.down_since: float | None = None

    def start(self) -> None:
        # One stats file per run, so that a restarted service does not overwrite its predecessor's.
        stats = ["--stats-file", str(self.stats_dir / f"{self.name}.{self.restarts}.json")]
        self.proc = spawn([sys.executable, "-m", "midbrain", *self.args, *stats], self.log_path, self.env)
        self.down_since = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Demo:
    def __init__(self, config_path: Path, *, broker: str = "auto", workdir: Path | None = None,
                 log_level: str = "WARNING") -> None:
        self.config_path = config_path.resolve()
        self.cfg: MidbrainConfig = load_config(config_path)
        self.workdir = (workdir or Path("var") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The configured ports when free (so that docs/protocol.md's examples work as typed),
        # otherwise free ones; the demo prints what it used.
        self.broker = BrokerProcess.choose(broker, self.workdir / "broker", port=port_or_free(self.cfg.mqtt.port))
        self.hub_port = port_or_free(self.cfg.hub.http_port)
        self.city_port = port_or_free(self.cfg.city.http_port)
        self.bridge_port = port_or_free(self.cfg.bridge.http_port or 8310)
        self.log_level = log_level
        # soft_wrap: a line is never broken at 80 columns when stderr is a log or a pipe.
        self.console = Console(stderr=True, soft_wrap=True)
        self._stopping = False
        self._broker_down_since: float | None = None
        self._broker_restarts = 0
        self.services: dict[str, Service] = {}
        self.hub_token = ""  # a staff API token, made at start (the hub's reads need one)

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def city_url(self) -> str:
        return f"http://127.0.0.1:{self.city_port}"

    def _env(self) -> dict[str, str]:
        w = self.workdir
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MIDBRAIN_MQTT__HOST": self.broker.host,
            "MIDBRAIN_MQTT__PORT": str(self.broker.port),
            "MIDBRAIN_HUB__HTTP_PORT": str(self.hub_port),
            "MIDBRAIN_HUB__DATABASE": str(w / "hub.sqlite3"),
            "MIDBRAIN_BRIDGE__OUTBOX": str(w / "bridge-outbox.sqlite3"),
            "MIDBRAIN_BRIDGE__CITY_URL": self.city_url,
            "MIDBRAIN_BRIDGE__HTTP_PORT": str(self.bridge_port),
            "MIDBRAIN_HUB__BRIDGE_URL": f"http://127.0.0.1:{self.bridge_port}",
            "MIDBRAIN_CITY__HTTP_PORT": str(self.city_port),
            "MIDBRAIN_CITY__DATABASE": str(w / "city.sqlite3"),
            "MIDBRAIN_EDGE__STATE_DIR": str(w / "edge"),
        }

    def service(self, name: str, *args: str) -> Service:
        svc = Service(name, [*args, "--config", str(self.config_path), "--log-level", self.log_level],
                      self._env(), self.workdir)
        self.services[name] = svc
        return svc

    def run_stats(self, name: str) -> list[dict[str, Any]]:
        """The stats file of every run of a service, in run order (a killed run wrote none)."""
        svc = self.services[name]
        paths = [svc.stats_dir / f"{name}.{n}.json" for n in range(svc.restarts + 1)]
        return [json.loads(p.read_text()) for p in paths if p.exists()]

    def last_stats(self, name: str) -> dict[str, Any]:
        """Services whose counters persist across their runs (hub, bridge): the last run's."""
        runs = self.run_stats(name)
        return runs[-1] if runs else {}

    # -- start ---------------------------------------------------------------------------

    def _demo_accounts(self) -> list[tuple[str, str, str]]:
        """A supervisor and a staff member to log in to the staff page with, new passwords each run,
        and a staff API token for the demo's own reads of the hub (status line, report)."""
        from hub.accounts import AccountError, Accounts

        accounts = Accounts(self.workdir / "hub.sqlite3")
        made = []
        try:
            for name, role, display in (("zhuguan", "supervisor", "张主管"), ("wuye", "staff", "王师傅")):
                password = secrets.token_urlsafe(9)
                try:
                    accounts.add_user(name, password, role, display, actor="demo")  # type: ignore[arg-type]
                except AccountError:  # a reused workdir: reset the password instead
                    accounts.set_password(name, password, actor="demo")
                made.append((name, role, password))
            try:
                accounts.revoke_token("demo-report", actor="demo")  # a reused workdir: a new token
            except AccountError:
                pass
            self.hub_token = accounts.create_token("demo-report", "staff", actor="demo")
            token_file = self.workdir / "hub-token"  # for docs/protocol.md's curl examples
            token_file.touch(mode=0o600)
            token_file.write_text(self.hub_token + "\n")
        finally:
            accounts.close()
        return made

    def start(self) -> None:
        self.logins = self._demo_accounts()
        self.broker.start()
        self.service("city", "city").start()
        # The bridge subscribes before the hub publishes its first summary: the broker keeps
        # summaries for the bridge's session only once that session exists.
        self.service("bridge", "bridge").start()
        self._wait_http(f"http://127.0.0.1:{self.bridge_port}/healthz", timeout=30,
                        ok=lambda body: body.get("mqtt_connected") is True)
        self.service("hub", "hub").start()
        wait_for_port("127.0.0.1", self.city_port, timeout=20)
        self._wait_http(f"{self.hub_url}/healthz", timeout=30)
        ports_file = self.workdir / "serial-ports.json"
        self.service("simulators", "simulate", "community", "--ports-file", str(ports_file)).start()
        ports = self._wait_json(ports_file, timeout=20)
        for gw in self.cfg.community.gateways:
            args = ["edge", "--gateway", gw.id]
            for device in self.cfg.community.devices_of(gw.id):
                if device.id in ports:
                    args += ["--serial-port", f"{device.id}={ports[device.id]}"]
            self.service(f"edge-{gw.id}", *args).start()
        self._write_pids()

    def _wait_http(self, url: str, timeout: float,
                   ok: Callable[[dict[str, Any]], bool] = lambda body: True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, timeout=1)
                if r.status_code == 200 and ok(r.json()):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            self._check_alive()
            time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout}s; see {self.workdir / 'logs'}")

    def _wait_json(self, path: Path, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())  # type: ignore[no-any-return]
            self._check_alive()
            time.sleep(0.05)
        raise RuntimeError(f"{path} not written after {timeout}s")

    def _check_alive(self) -> None:
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}; see {svc.log_path}")

    # -- run ---------------------------------------------------------------------------------

    def run(self, duration: float | None) -> dict[str, Any]:
        # SIGHUP too: a closed terminal stops the demo as cleanly as Ctrl-C.
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        started = time.monotonic()
        result: dict[str, Any] = {"ok": False}
        try:
            self.start()
            self.console.print(
                f"[bold]midbrain demo[/] — community [cyan]{self.cfg.community.id}[/] "
                f"({self.cfg.community.name}), broker: {self.broker.kind} on 127.0.0.1:{self.broker.port}\n"
                f"  hub API      {self.hub_url}/api/devices  (every read needs a login or a token: "
                f"curl -H 'Authorization: Bearer {self.hub_token}' ...)\n"
                f"  staff page   {self.hub_url}/staff   log in as "
                + ", ".join(f"{name} / {password} ({role})" for name, role, password in self.logins) + "\n"
                f"  what left    {self.hub_url}/egress  (the signed egress log, for the residents' committee)\n"
                f"  metrics      {self.hub_url}/metrics\n"
                f"  bridge       http://127.0.0.1:{self.bridge_port}/metrics  (outbox)\n"
                f"  city         {self.city_url}/  ({self.city_url}/api/summaries)\n"
                f"  data & logs  {self.workdir}\n"
                f"  the CLI      {cli_hint()}\n"
                "Ctrl-C stops everything cleanly.")
            tick = 0
            while not self._stopping and (duration is None or time.monotonic() - started < duration):
                self._supervise()
                self._status_line(tick)
                tick += 1
                time.sleep(1.0)
            if self.console.is_terminal:
                sys.stderr.write("\n")
            result = self.stop(time.monotonic() - started)
        finally:
            for svc in self.services.values():
                svc.kill()  # only those still running after an error
            self.broker.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return result

    def _supervise(self, restart_after_s: float = 3.0) -> None:
        """Restart the broker or a service that died (crashed or was killed), after a short pause;
        a service with a file of its name in ``<workdir>/hold/`` stays down until it is removed."""
        now = time.monotonic()
        if not self.broker.alive():
            if self._broker_down_since is None:
                self._broker_down_since = now
                self.console.print(f"[yellow]broker exited ({self.broker.returncode}); restarting in "
                                   f"{restart_after_s:.0f}s on the same port[/]")
            elif now - self._broker_down_since >= restart_after_s:
                self.broker.start()
                self._broker_down_since = None
                self._broker_restarts += 1
                self._write_pids()
        for svc in self.services.values():
            if svc.alive():
                continue
            if svc.down_since is None:
                svc.down_since = now
                code = svc.proc.returncode if svc.proc is not None else None
                if self.console.is_terminal:
                    sys.stderr.write("\n")
                self.console.print(f"[yellow]{svc.name} exited ({code}); restarting in {restart_after_s:.0f}s[/]")
            elif (self.workdir / "hold" / svc.name).exists():
                continue  # held down on purpose (a fault drill): restarted once the file is gone
            elif now - svc.down_since >= restart_after_s:
                svc.restarts += 1
                svc.start()
                self._write_pids()

    def restarts(self) -> dict[str, int]:
        counts = {n: s.restarts for n, s in self.services.items() if s.restarts}
        return {**({"broker": self._broker_restarts} if self._broker_restarts else {}), **counts}

    def _write_pids(self) -> None:
        pids = {n: s.proc.pid for n, s in self.services.items() if s.proc is not None}
        pids["broker"] = self.broker.pid or 0
        (self.workdir / "pids.json").write_text(json.dumps(pids, indent=2))

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _get_json(self, url: str, empty: Any) -> Any:
        """The JSON body of a 200 answer, or ``empty`` when the service is down or says otherwise.
        The hub's reads carry the demo's API token."""
        headers = {"Authorization": f"Bearer {self.hub_token}"} if url.startswith(self.hub_url) else {}
        try:
            r = httpx.get(url, timeout=2, headers=headers)
            return r.json() if r.status_code == 200 else empty
        except (httpx.HTTPError, ValueError):
            return empty

    def _status_line(self, tick: int) -> None:
        """One line, redrawn in place each second on a terminal; a plain line every 10 s in a log."""
        tty = self.console.is_terminal
        if not tty and tick % 10:
            return
        hub, city = self._get_json(f"{self.hub_url}/api/stats", {}), self._get_json(f"{self.city_url}/api/stats", {})
        outbox = self._get_json(f"http://127.0.0.1:{self.bridge_port}/healthz", {}).get("outbox", {})
        waiting = outbox.get("pending", 0) + outbox.get("in_batches", 0) if outbox else "?"
        down = [n for n, s in self.services.items() if not s.alive()]
        line = (f"online {hub.get('devices_online', '?')}/{hub.get('devices', '?')} · stored {hub.get('stored', '?')}"
                f" · dead-lettered {hub.get('dead_lettered', '?')} · alerts {hub.get('alerts', '?')}"
                f" · outbox {waiting} · summaries at city {city.get('summaries', '?')}"
                + (f" · down: {', '.join(down)}" if down else ""))
        if tty:
            width = shutil.get_terminal_size((100, 20)).columns
            sys.stderr.write("\r\x1b[2K" + line[: width - 1])
            sys.stderr.flush()
        else:
            self.console.print(line, highlight=False, soft_wrap=True)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self, elapsed: float) -> dict[str, Any]:
        self.console.print("stopping: simulators → edges → hub → bridge → city → broker")
        codes: dict[str, int | None] = {}
        codes["simulators"] = self.services["simulators"].stop()
        self._settled_hub_stats()  # readings already accepted by the broker reach the hub first
        for name in [n for n in self.services if n.startswith("edge-")]:
            codes[name] = self.services[name].stop()
        hub_stats = self._settled_hub_stats()
        alerts = self._get_json(f"{self.hub_url}/api/alerts?limit=10000", [])
        codes["hub"] = self.services["hub"].stop()
        codes["bridge"] = self.services["bridge"].stop(timeout=30)
        city_stats = self._get_json(f"{self.city_url}/api/stats", {})
        city_communities = {c["community"]: c for c in self._get_json(f"{self.city_url}/api/communities", [])}
        codes["city"] = self.services["city"].stop()
        attributed = attribute_alerts(alerts, self.cfg)
        sim_runs = self.run_stats("simulators")  # counters start from zero in each run: summed
        per_device: dict[str, int] = {}
        for run in sim_runs:
            for device, n in run.get("per_device", {}).items():
                per_device[device] = per_device.get(device, 0) + n
        sim = {"readings_published": sum(r.get("readings_published", 0) for r in sim_runs),
               "republished": sum(r.get("republished", 0) for r in sim_runs),
               "events_published": sum(r.get("events_published", 0) for r in sim_runs), "per_device": per_device}
        hub_final = self.last_stats("hub")
        bridge = self.last_stats("bridge")
        edges = [run for g in self.cfg.community.gateways for run in self.run_stats(f"edge-{g.id}")]
        rejected_at_edge = sum(e.get("rejected", 0) for e in edges)
        published = sim.get("readings_published", 0)
        stored = hub_stats.get("stored", 0)
        dead = hub_stats.get("dead_lettered", 0) + rejected_at_edge
        # Loss is counted over what came through the gateways' announced agent runs, so that
        # messages typed by hand during the demo (docs/protocol.md) do not mask a loss.
        accounted = (hub_stats.get("stored_announced", 0) + hub_stats.get("dead_announced_telemetry", 0)
                     + rejected_at_edge)
        stages = {
            "published_by_simulators": published,
            "forwarded_by_edges": sum(e.get("readings_published", 0) for e in edges),
            "received_by_hub": hub_stats.get("received_telemetry", 0),
            "stored": stored,
            "dead_lettered": dead,
            # Alerts on the devices the scenario (simulate.faults) put a fault on; any others
            # are listed under details.alerts.outside_the_scenario.
            "alerts_raised": sum(attributed["by_fault"].values()),
            # Revisions (late data for a window already summarised) count as summaries here,
            # except at the city, which keeps one per key: its latest revision.
            "summaries_published_by_hub": hub_final.get("summaries", 0),
            "summary_revisions_by_hub": hub_final.get("summary_revisions", 0),
            "summaries_produced": bridge.get("produced", 0),
            "summaries_superseded": bridge.get("superseded", 0),  # revised before they were sent
            "summaries_acknowledged": bridge.get("acknowledged", 0),
            "summaries_at_city": city_communities.get(self.cfg.community.id, {}).get("summaries", 0),
            # Published by a simulator but neither stored nor dead-lettered anywhere. A reading
            # sent again after its PUBACK did not come (QoS 1 is at least once) may be stored
            # twice: lost is then negative, by at most the number sent again.
            "lost": max(0, published - accounted),
        }
        report: dict[str, Any] = {
            "community": self.cfg.community.id,
            "broker": self.broker.kind,
            "duration_s": round(elapsed, 1),
            "stages": stages,
            "details": {
                "alerts": {"by_kind": attributed["by_kind"], "by_fault": attributed["by_fault"],
                           "outside_the_scenario": attributed["outside"]},
                "readings_per_device": sim.get("per_device", {}),
                "events_published_by_simulators": sim.get("events_published", 0),
                "events_stored": hub_stats.get("events_stored", 0),
                "duplicates_dropped_by_hub": hub_stats.get("duplicates", 0),
                "stored_from_other_publishers": hub_stats.get("stored_unannounced", 0),
                "readings_sent_again_by_simulators": sim["republished"],
                "stored_twice_after_a_resend": max(0, accounted - published),
                "rejected_at_edges": rejected_at_edge,
                "summaries_rejected_by_city": bridge.get("rejected", 0),
                "city_duplicates_refused": city_stats.get("duplicate_summaries", 0),
                "exit_codes": codes,
                "restarts": self.restarts(),
            },
            "workdir": str(self.workdir),
        }
        report["ok"] = (stages["lost"] == 0 and accounted - published <= sim["republished"]
                        and all(c == 0 for c in codes.values())
                        and stages["summaries_published_by_hub"] == stages["summaries_produced"]
                        and stages["summaries_produced"] - stages["summaries_superseded"]
                        == stages["summaries_acknowledged"]
                        and stages["summaries_at_city"]
                        == stages["summaries_published_by_hub"] - stages["summary_revisions_by_hub"])
        self.console.print_json(json.dumps(report))
        return report


    def _settled_hub_stats(self, timeout: float = 20.0) -> dict[str, Any]:
        """Hub counters once nothing more is arriving (the broker may still hold a few in flight)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            now = self._get_json(f"{self.hub_url}/api/stats", {})
            key = (now.get("received_telemetry"), now.get("stored"), now.get("pending"))
            if key != (last.get("received_telemetry"), last.get("stored"), last.get("pending")):
                last, stable_since = now, time.monotonic()
            elif now.get("pending") == 0 and time.monotonic() - stable_since > 1.0:
                return now
            time.sleep(0.2)
        return last

