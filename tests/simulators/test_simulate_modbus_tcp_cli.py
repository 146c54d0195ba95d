"""`midbrain simulate modbus-tcp` prints host:port where every unit id answers, and stops on SIGTERM."""

import signal
import subprocess
import sys

import pytest
from pymodbus.client import ModbusTcpClient

from firmware_adapters.drivers import NoAnswer
from firmware_adapters.modbus import ModbusDriver
from firmware_adapters.register_map import RegisterPoint as P

MAP = (P("temperature", "holding", 0, "int16", scale=0.1), P("humidity", "holding", 1, "uint16", scale=0.1),
       P("interval", "holding", 10))


@pytest.mark.real
def test_simulate_modbus_tcp_count_3_serves_three_unit_ids_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "simulate", "modbus-tcp", "--count", "3",
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:2] == ["modbus_tcp", "x3"]
        host, port = line[2].rsplit(":", 1)
        client = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
        assert client.connect()
        try:
            reads = [ModbusDriver(client, unit, MAP).poll().values for unit in (1, 2, 3)]
            with pytest.raises(NoAnswer, match="unit 4"):  # exception 0Bh, as a TCP-to-RTU gateway answers
                ModbusDriver(client, 4, MAP).poll()
        finally:
            client.close()
        assert all(15 < r["temperature"] < 30 and 0 < r["humidity"] <= 100 and r["interval"] == 30 for r in reads)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
