"""The demo's MQTT broker: Mosquitto when it is installed, otherwise embedded amqtt.

Mosquitto is spawned on a free loopback port with ``config/mosquitto/demo.conf``
(anonymous access on loopback only). amqtt runs as ``midbrain broker``, so that both
are real processes that can be stopped and started again.
"""

import ctypes
import logging
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_CONF = Path(__file__).resolve().parent / "defaults" / "mosquitto-demo.conf"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_or_free(port: int, host: str = "127.0.0.1") -> int:
    """``port`` if it can be bound now, else a free one.

    SO_REUSEADDR as the servers themselves set it: a port in TIME_WAIT after the previous
    run is usable, and must not send the demo to a random port.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return free_port(host)
    return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def die_with_parent() -> None:
    """In a child, before exec: receive SIGTERM when the parent dies (Linux), so that no
    service is orphaned if the supervisor is killed outright."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> "subprocess.Popen[bytes]":
    """A child service: own session (a terminal's Ctrl-C reaches only the supervisor, which
    stops children in order), dies with its parent, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as fh:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent)


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)


class BrokerProcess:
    """A broker in its own process, on a loopback port; ``kind`` is 'mosquitto' or 'amqtt'."""

    def __init__(self, kind: str, port: int, workdir: Path) -> None:
        self.kind = kind
        self.port = port
        self.host = "127.0.0.1"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def choose(cls, prefer: str, workdir: Path, port: int | None = None) -> "BrokerProcess":
        kind = prefer
        if prefer == "auto":
            kind = "mosquitto" if mosquitto_path() else "amqtt"
        if kind == "mosquitto" and not mosquitto_path():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto), use --broker amqtt")
        return cls(kind, port or free_port(), workdir)

    def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        log_path = self._workdir / f"{self.kind}.log"
        if self.kind == "mosquitto":
            conf = self._workdir / "mosquitto.conf"
            text = DEMO_CONF.read_text().replace("@PORT@", str(self.port)).replace("@PERSIST@", str(self._workdir) + "/")
            if os.geteuid() == 0:
                # Mosquitto started as root drops to the 'mosquitto' user, which could not
                # write the persistence file in the run directory; this broker is ours alone.
                text += "user root\n"
            conf.write_text(text)
            cmd = [str(mosquitto_path()), "-c", str(conf)]
        else:
            cmd = [sys.executable, "-m", "midbrain.cli", "broker", "--port", str(self.port)]
        self._proc = spawn(cmd, log_path)
        try:
            wait_for_port(self.host, self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.kind} did not start; see {log_path}") from None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "BrokerProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
