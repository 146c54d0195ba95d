"""`midbrain simulate serial` prints a port that a driver can read, as the README says."""

import signal
import subprocess
import sys

import pytest

from firmware_adapters.drivers import Dlt645Driver
from firmware_adapters.serial_transport import SerialTransport


@pytest.mark.real
def test_simulate_serial_dlt645_count_8_prints_a_bus_of_eight_meters() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "simulate", "serial", "--protocol", "dlt645",
                             "--count", "8", "--baudrate", "115200"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:2] == ["dlt645", "x8"] and line[2].startswith("/dev/pts/")
        transport = SerialTransport(line[2], 115200, timeout_s=0.05)
        try:
            values = Dlt645Driver(transport, "000000000008", {"e": "energy_total"}, timeout_s=1.0).poll().values
            with pytest.raises(Exception, match="did not answer"):
                Dlt645Driver(transport, "000000000009", {"e": "energy_total"}, timeout_s=0.1).poll()
        finally:
            transport.close()
        assert values["e"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
