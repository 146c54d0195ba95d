"""Every service ends with status 0 on SIGTERM, however early the signal comes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

SLOW_START = """
import os, signal, sys, time
import midbrain.cli
from midbrain import entry

def app(**kwargs):  # as if importing and reading the configuration were slow
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    sys.exit(3)

midbrain.cli.app = app
entry.main(sys.argv[1:])
"""


@pytest.mark.real
@pytest.mark.parametrize(("args", "code"), [
    (["hub"], 0), (["edge", "--gateway", "gw-b1"], 0), (["simulate", "serial"], 0), (["city"], 0),
    (["config", "check", "config/demo.toml"], -signal.SIGTERM),  # a one-shot command keeps the default action
])
def test_a_sigterm_before_the_service_is_up_ends_it_with_status_0(args: list[str], code: int) -> None:
    result = subprocess.run([sys.executable, "-c", SLOW_START, *args], cwd=REPO, capture_output=True, timeout=30)
    assert result.returncode == code, result.stderr.decode()


@pytest.mark.real
@pytest.mark.parametrize("protocol", ["dlt645", "pms5003"])
def test_simulate_serial_stops_with_status_0(protocol: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "midbrain", "simulate", "serial", "--protocol", protocol],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith(f"{protocol} x1 /dev/pts/"), line
        assert os.path.exists(line.split()[-1])
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()
