"""The shipped production Mosquitto (config/mosquitto/), started by a test on free ports.

The shipped mosquitto.conf and ACL are used as they are; only the paths (password file,
ACL, certificates, persistence) and the two listeners' ports are replaced, and every
replacement must hit, so that a change to the shipped file cannot make the tests test
something else. The password file is made with ``mosquitto_passwd``; the TLS listener
gets a server certificate from a test CA (tests/pki.py).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from midbrain.broker import free_port, mosquitto_path, wait_for_port
from tests.pki import Pki

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONF = REPO / "config" / "mosquitto" / "mosquitto.conf"
SHIPPED_ACL = REPO / "config" / "mosquitto" / "midbrain.acl"


class ProductionMosquitto:
    """Start and stop (and start again, same ports and persistence) the shipped broker config."""

    def __init__(self, workdir: Path, users: dict[str, str], pki: Pki, acl: Path = SHIPPED_ACL) -> None:
        passwd_tool = shutil.which("mosquitto_passwd")
        if mosquitto_path() is None or passwd_tool is None:
            pytest.fail("mosquitto and mosquitto_passwd are required: run the README's test command")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port, self.tls_port = free_port(), free_port()
        self.pki = pki
        self.server = pki.server(names=("localhost",))  # so that 127.0.0.1 is a wrong host name
        passwd = workdir / "midbrain.passwd"
        for i, (user, password) in enumerate(users.items()):
            subprocess.run([passwd_tool, *(["-c"] if i == 0 else []), "-b", str(passwd), user, password], check=True)
        passwd.chmod(0o600)
        lines = SHIPPED_CONF.read_text().splitlines()
        for old, new in (("/etc/mosquitto/midbrain.passwd", str(passwd)), ("/etc/mosquitto/midbrain.acl", str(acl)),
                         ("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1"),
                         ("listener 8883", f"listener {self.tls_port} 127.0.0.1"),
                         ("/etc/mosquitto/certs/ca.crt", str(pki.ca)),
                         ("/etc/mosquitto/certs/server.crt", str(self.server.cert)),
                         ("/etc/mosquitto/certs/server.key", str(self.server.key)),
                         ("persistence_location /var/lib/mosquitto/", f"persistence_location {workdir}/")):
            hits = [i for i, line in enumerate(lines) if not line.startswith("#") and old in line]
            assert len(hits) == 1, f"the shipped mosquitto.conf no longer has {old!r} once"
            lines[hits[0]] = lines[hits[0]].replace(old, new)
        conf = "\n".join(lines) + "\nlog_dest stdout\nautosave_interval 1\n"
        if os.geteuid() == 0:
            conf += "# Started as root by the test: keep root so that the private temp files stay readable.\nuser root\n"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(conf)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self._proc = subprocess.Popen([str(mosquitto_path()), "-c", str(self.conf)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.host, self.port)
            wait_for_port(self.host, self.tls_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()}") from None

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "ProductionMosquitto":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
