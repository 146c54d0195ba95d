"""The Modbus driver over pymodbus's TCP client, against the simulated TCP-to-RTU gateway
(pymodbus's own server): the same register map as RTU, a unit lost behind the gateway,
and a link that goes down."""

import asyncio

import pytest

from firmware_adapters.drivers import ModbusReplyError, NoAnswer
from firmware_adapters.modbus import ModbusDriver, tcp_client
from firmware_adapters.register_map import RegisterPoint as P
from firmware_adapters.serial_transport import TransportError
from simulators.modbus_tcp import modbus_tcp_gateway

MAP = (P("temperature", "holding", 0, "int16", scale=0.1), P("humidity", "holding", 1, "uint16", scale=0.1),
       P("energy", "holding", 2, "float32"), P("interval", "holding", 10), P("relay", "coil", 0, "bool"))


@pytest.mark.real
async def test_units_behind_one_tcp_server_read_write_fall_silent_and_lose_their_link() -> None:
    async with modbus_tcp_gateway(2, first_unit=5, seed=3) as sim:
        client = tcp_client(sim.host, sim.port, timeout_s=0.5, retries=0)
        assert await asyncio.to_thread(client.connect)
        try:
            five, six = ModbusDriver(client, 5, MAP), ModbusDriver(client, 6, MAP)
            reads = [(await asyncio.to_thread(d.poll)).values for d in (five, six)]
            await asyncio.to_thread(six.write, "interval", 120)
            await asyncio.to_thread(six.write, "relay", 1)
            after = (await asyncio.to_thread(six.poll)).values
            with pytest.raises(ModbusReplyError, match="illegal data address"):
                await asyncio.to_thread(six.write, "temperature", 20)
            sim.units[5].faults.no_answer = True  # the gateway answers 0Bh for it
            with pytest.raises(NoAnswer, match="unit 5"):
                await asyncio.to_thread(five.poll)
            assert five.counters.errors["gateway-no-answer"] >= 1
            await sim.stop()  # the server goes away: its connection closes
            with pytest.raises(TransportError):
                await asyncio.to_thread(six.poll)
        finally:
            client.close()
    assert all(15 < r["temperature"] < 30 and r["energy"] > 0 and r["interval"] == 30 for r in reads)
    assert after["interval"] == 120 and after["relay"] == 1 and sim.units[6].holding[10] == 120
