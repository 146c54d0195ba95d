"""The bus poller: an unplugged adapter and garbage on the line never stop the polling loop."""

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.poller import BusPoller
from edge.profiles import load_bus_file
from firmware_adapters.drivers import Cjt188Driver, Dlt645Driver, LineDriver, NoAnswer, Pms5003Driver
from firmware_adapters.line_sensor import LineFormat
from simulators.pty_bus import dlt645_bus
from tests.scripted_line import ScriptedLine


def _meter_profile(tmp_path: Path, port: Path) -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(f'''gateway = "gw-b1"
[bus]
protocol = "dlt645"
port = "{port}"
timeout_s = 0.1
retries = 0
reopen_s = 0.1
[models.m]
class = "electricity_meter"
interval_s = 0.1
offline_after = 2
[[models.m.points]]
name = "voltage_v"
source = "voltage_a"
[[devices]]
id = "b1-em-01"
model = "m"
address = "000000000001"
''')
    return path


@pytest.mark.real
async def test_an_unplugged_adapter_is_survived_and_its_return_noticed(tmp_path: Path) -> None:
    # Like udev's /dev/serial/by-id/... link: the name stays, the device behind it comes and goes.
    link = tmp_path / "ttyUSB-meter"
    events: list[tuple[str, str]] = []
    readings: list[dict[str, float]] = []
    first = dlt645_bus(1, baudrate=115200).start()
    os.symlink(first.port, link)
    poller = BusPoller(load_bus_file(_meter_profile(tmp_path, link)),
                       lambda d, ts, v, q: readings.append(v), lambda d, e, s, data: events.append((d, e)))
    stop = asyncio.Event()
    run = asyncio.create_task(poller.run(stop))
    try:
        await _until(lambda: len(readings) >= 2)
        first.stop()  # unplugged: the pty disappears
        link.unlink()
        await _until(lambda: ("b1-em-01", "device_offline") in events)
        assert poller.counters["port_errors"] + poller.counters["poll_errors"] > 0
        second = dlt645_bus(1, baudrate=115200).start()  # plugged back in
        os.symlink(second.port, link)
        before = len(readings)
        try:
            await _until(lambda: len(readings) > before + 1)
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            second.stop()
    finally:
        stop.set()
    assert [e for _, e in events] == ["device_online", "device_offline", "device_online"]


async def _until(condition: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=12), st.integers(0, 3))
def test_fuzz_no_exception_but_no_answer_escapes_a_driver(chunks: list[bytes], which: int) -> None:
    noise = ScriptedLine(list(chunks))
    t = 0.005  # long enough to read every chunk; a real line would take longer
    driver = [Dlt645Driver(noise, "000000000001", {"v": "voltage_a"}, timeout_s=t, retries=0),  # type: ignore[arg-type]
              Cjt188Driver(noise, 0x10, "00000000000001", timeout_s=t, retries=0),  # type: ignore[arg-type]
              Pms5003Driver(noise, timeout_s=t, retries=0),  # type: ignore[arg-type]
              LineDriver(noise, LineFormat("json", keys={"t": "t"}), timeout_s=t)][which]  # type: ignore[arg-type]
    try:
        read = driver.poll()
    except NoAnswer:
        assert not noise.chunks  # it read everything before giving up
        return
    assert read.values or read.errors
