"""Modbus TCP devices: pymodbus's own async server playing a TCP-to-RTU gateway.

One :class:`ModbusTcpGateway` listens on one TCP port and answers for several unit ids,
each a :class:`simulators.pty_bus.ModbusSlave` — the register map, the changing values
and the writable registers of the RTU simulator, so a profile's register map reads the
same over either. As a real gateway does, it answers exception 0Bh (gateway target
device failed to respond) for a unit id it does not know, or for a unit whose
``faults.no_answer`` is set.

It runs in the caller's event loop (``async with ModbusTcpGateway(...)``), and can be
stopped and started again on the same port, which closes every client connection: a
cut TCP link, as the agent's tests need it. ``midbrain simulate modbus-tcp`` runs one
from the command line.
"""

import functools
from typing import Self

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from simulators.pty_bus import ModbusSlave

_ANY_OTHER_UNIT = 0  # pymodbus: device id 0 answers for every id not defined


async def _unit_action(unit: ModbusSlave, function_code: int, start_address: int, address: int, count: int,
                       registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
    """Keep pymodbus's registers and the unit's in step (pymodbus calls this on every access)."""
    if unit.faults.no_answer:
        return ExcCodes.GATEWAY_NO_RESPONSE
    if function_code in (3, 4):  # a read gets fresh values, as from the RTU unit
        unit.refresh()
        registers[start_address:start_address + len(unit.holding)] = unit.holding
    elif function_code in (6, 16) and set_values is not None:
        written = range(address, address + len(set_values))
        if not set(written) <= unit.WRITABLE:
            return ExcCodes.ILLEGAL_ADDRESS
        for a, v in zip(written, set_values, strict=True):
            unit.holding[a] = int(v)
    elif function_code in (5, 15) and set_values is not None:
        for i, v in enumerate(set_values):
            unit.coils[address + i] = bool(v)
    return None


async def _no_such_unit(*_: object) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _device(device_id: int, unit: ModbusSlave, action: SimAction) -> SimDevice:
    """The unit's tables, apart as on the RTU unit: (coils, discrete inputs, holding, input)."""
    def bits(values: list[bool]) -> list[SimData]:
        return [SimData(0, values=values + [False] * (-len(values) % 16), datatype=DataType.BITS)]

    def registers() -> list[SimData]:
        return [SimData(0, values=list(unit.holding), datatype=DataType.REGISTERS)]

    return SimDevice(device_id, simdata=(bits(list(unit.coils)), bits([False] * 16), registers(), registers()),
                     action=action)


class ModbusTcpGateway:
    """Several Modbus units behind one TCP port (``port=0``: a free one, kept across restarts)."""

    def __init__(self, units: list[ModbusSlave], *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not units:
            raise ValueError("a gateway needs at least one unit")
        self.units = {u.unit: u for u in units}
        self.host = host
        self.port = port
        self._server: ModbusTcpServer | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> Self:
        """Listen (again); raises OSError if the port is taken."""
        if self._server is not None:
            return self
        # Any other unit id: the same tables (so that a read within them reaches the action), no answer.
        template = next(iter(self.units.values()))
        devices = [_device(_ANY_OTHER_UNIT, template, _no_such_unit),
                   *(_device(u.unit, u, functools.partial(_unit_action, u)) for u in self.units.values())]
        server = ModbusTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's way of saying it could not listen
            await server.shutdown()
            raise OSError(f"cannot listen on {self.address}: {exc}") from exc
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every client connection; a second call does nothing."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def modbus_tcp_gateway(count: int, *, first_unit: int = 1, seed: int = 0, host: str = "127.0.0.1",
                       port: int = 0) -> ModbusTcpGateway:
    """``count`` units with consecutive ids from ``first_unit`` (seeded as the RTU simulator's)."""
    return ModbusTcpGateway([ModbusSlave(first_unit + i, seed + i) for i in range(count)], host=host, port=port)
