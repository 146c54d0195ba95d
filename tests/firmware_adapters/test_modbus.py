"""Modbus RTU: register maps decoded through pymodbus, against pymodbus's own server and our simulator."""

import asyncio
import struct
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusSerialClient
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_adapters import modbus, register_map
from firmware_adapters.drivers import ModbusReplyError, NoAnswer
from firmware_adapters.modbus import ModbusDriver
from firmware_adapters.register_map import RegisterPoint
from simulators.null_modem import NullModem
from simulators.pty_bus import Faults, ModbusSlave, PtyBus, decode_modbus_request, modbus_bus

P = RegisterPoint


@pytest.mark.unit
def test_plan_groups_contiguous_points_per_table() -> None:
    points = (P("a", "holding", 0, "int16"), P("b", "holding", 1), P("c", "holding", 2, "float32"),
              P("d", "holding", 40), P("e", "input", 0, "uint32"), P("f", "coil", 3, "bool"))
    blocks = register_map.plan_reads(points)
    assert [(b.table, b.address, b.count, [p.name for p in b.points]) for b in blocks] == [
        ("holding", 0, 4, ["a", "b", "c"]), ("holding", 40, 1, ["d"]), ("input", 0, 2, ["e"]), ("coil", 3, 1, ["f"])]


@pytest.mark.unit
@pytest.mark.parametrize(("point", "regs", "value"), [
    (P("t", "holding", 0, "int16", scale=0.1), [0xFF9C], -10.0),
    (P("u", "holding", 0, "uint32"), [0x0001, 0x0002], 65538.0),
    (P("u", "holding", 0, "uint32", word_order="little"), [0x0002, 0x0001], 65538.0),
    (P("f", "holding", 0, "float32"), list(struct.unpack(">HH", struct.pack(">f", 1.5))), 1.5),
    (P("f", "holding", 0, "float32", byte_order="little", word_order="little"), [0x0000, 0xC03F], 1.5),
    (P("s", "input", 0, "uint16", scale=0.5, offset=-40), [100], 10.0),
])
def test_decode_byte_and_word_orders_scale_offset(point: RegisterPoint, regs: list[int], value: float) -> None:
    assert modbus.decode_point(point, regs) == pytest.approx(value)
    assert modbus.decode_point(point, modbus.encode_point(point, value)) == pytest.approx(value)


@pytest.mark.unit
def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        modbus.encode_point(P("x", "holding", 0, "uint16"), 70000)
    with pytest.raises(ValueError, match="whole number"):
        modbus.encode_point(P("x", "holding", 0, "uint16", scale=0.1), 1.234)


@pytest.mark.unit
def test_a_map_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="coil needs type bool"):
        P("x", "coil", 0, "uint16")


@pytest.mark.unit
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_the_simulators_request_framer(buf: bytes) -> None:
    while buf:
        used, _, _ = decode_modbus_request(buf)
        if used == 0:
            break
        assert 0 < used <= len(buf)
        buf = buf[used:]


# -- against pymodbus's own server ----------------------------------------------------------


@pytest.fixture
def pymodbus_server() -> Iterator[tuple[str, list[int]]]:
    """pymodbus's RTU server for unit 7 on one end of a null-modem pty pair."""
    regs = [235, 612, *struct.unpack(">HH", struct.pack(">f", 42.25)), 0x0002, 0x0001, 0xFF38, 30]
    with NullModem() as cable:
        loop = asyncio.new_event_loop()
        device = SimDevice(7, simdata=[SimData(0, values=regs + [0] * 8, datatype=DataType.REGISTERS)])
        servers: list[ModbusSerialServer] = []

        async def serve() -> None:  # pymodbus builds its server inside a running loop
            servers.append(ModbusSerialServer(device, port=cable.port_a, baudrate=19200, timeout=0.5))
            await servers[0].serve_forever()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        try:
            yield cable.port_b, regs
        finally:
            asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(5)
            thread.join(5)
            loop.close()


MAP = (P("temperature", "holding", 0, "int16", scale=0.1), P("humidity", "holding", 1, "uint16", scale=0.1),
       P("energy", "holding", 2, "float32"), P("pulses", "holding", 4, "uint32", word_order="little"),
       P("offset_t", "holding", 6, "int16", scale=0.01), P("interval", "holding", 7))


@pytest.mark.real
def test_driver_reads_and_writes_pymodbus_server(pymodbus_server: tuple[str, list[int]]) -> None:
    port, _ = pymodbus_server
    client = ModbusSerialClient(port, baudrate=19200, timeout=0.5, retries=1)
    assert client.connect()
    try:
        driver = ModbusDriver(client, 7, MAP)
        read = driver.poll()
        driver.write("interval", 60)
        after = driver.poll()
    finally:
        client.close()
    assert read.values == pytest.approx({"temperature": 23.5, "humidity": 61.2, "energy": 42.25,
                                         "pulses": 65538.0, "offset_t": -2.0, "interval": 30.0})
    assert after.values["interval"] == 60
    assert len(driver.blocks) == 1 and driver.counters.frames == 2


# -- against our simulator: faults, exceptions, coils ---------------------------------------


SIM_MAP = (P("temperature", "holding", 0, "int16", scale=0.1), P("humidity", "holding", 1, "uint16", scale=0.1),
           P("energy", "holding", 2, "float32"), P("relay", "coil", 0, "bool"))


def _client(port: str, **kw: float) -> ModbusSerialClient:
    client = ModbusSerialClient(port, baudrate=19200, timeout=kw.get("timeout", 0.3), retries=int(kw.get("retries", 1)))
    assert client.connect()
    return client


@pytest.mark.real
def test_driver_polls_several_units_on_one_bus_and_writes_a_coil() -> None:
    with modbus_bus(3, baudrate=115200) as bus:
        client = _client(bus.port)
        try:
            drivers = [ModbusDriver(client, unit, SIM_MAP) for unit in (1, 2, 3)]
            reads = [d.poll().values for d in drivers]
            drivers[1].write("relay", 1)
            relay = drivers[1].poll().values["relay"]
        finally:
            client.close()
    assert all(15 < r["temperature"] < 30 and 0 < r["humidity"] <= 100 and r["relay"] == 0 for r in reads)
    assert relay == 1.0


@pytest.mark.real
def test_an_exception_reply_is_a_per_point_error_and_a_dead_unit_is_no_answer() -> None:
    bad_map = (P("temperature", "holding", 0, "int16", scale=0.1), P("nothing", "holding", 100))
    with PtyBus("modbus", [ModbusSlave(1, 1), ModbusSlave(2, 2, faults=Faults(no_answer=True))]) as bus:
        client = _client(bus.port, timeout=0.1)
        try:
            read = ModbusDriver(client, 1, bad_map).poll()
            with pytest.raises(ModbusReplyError, match="illegal data address"):
                ModbusDriver(client, 1, SIM_MAP).write("temperature", 20)
            with pytest.raises(NoAnswer, match="unit 2"):
                ModbusDriver(client, 2, SIM_MAP).poll()
        finally:
            client.close()
    assert "temperature" in read.values and "illegal data address" in read.errors["nothing"]


@pytest.mark.real
def test_corrupted_replies_are_retried_and_counted_by_pymodbus_never_raised() -> None:
    flaky = ModbusSlave(1, 1, faults=Faults(bad_checksum=0.3))
    with PtyBus("modbus", [flaky], seed=5) as bus:
        client = _client(bus.port, timeout=0.1, retries=3)
        try:
            driver = ModbusDriver(client, 1, SIM_MAP)
            reads = []
            for _ in range(10):
                try:
                    reads.append(driver.poll())
                except NoAnswer:
                    pass
        finally:
            client.close()
    assert bus.counters.faults["bad_checksum"] > 0
    assert len(reads) >= 8
