"""Modbus RTU and TCP through pymodbus: register values decoded with pymodbus's
converters, and the driver for one device (one unit id) on a shared client.

The protocol itself (RTU or MBAP framing, CRC, retries, exception replies) is pymodbus's;
a driver is the same over either client, so a register map reads the same on an RS-485
bus and behind a Modbus TCP server or TCP-to-RTU gateway. What a driver raises:

    pymodbus ConnectionException        -> TransportError  the link is down (the caller
                                                            reconnects; every unit on it failed)
    no reply after pymodbus's retries   -> NoAnswer        this unit did not answer
    exception 0Ah/0Bh from a gateway    -> NoAnswer        the gateway's unit did not answer
    any other exception reply           -> ModbusReplyError (a per-point error when polling)

This module is imported only where a Modbus bus exists, so that gateways without one do
not carry pymodbus in memory.
"""

import struct

from pymodbus.client import ModbusBaseSyncClient, ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from firmware_adapters.drivers import FrameCounters, ModbusReplyError, NoAnswer, PointRead
from firmware_adapters.register_map import Block, RegisterPoint, plan_reads
from firmware_adapters.serial_transport import TransportError

_PYMODBUS = {"int16": ModbusSerialClient.DATATYPE.INT16, "uint16": ModbusSerialClient.DATATYPE.UINT16,
             "int32": ModbusSerialClient.DATATYPE.INT32, "uint32": ModbusSerialClient.DATATYPE.UINT32,
             "float32": ModbusSerialClient.DATATYPE.FLOAT32}


def _swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def decode_point(point: RegisterPoint, registers: list[int] | list[bool]) -> float:
    """The engineering value of ``point`` from the registers (or bits) it spans."""
    if point.type == "bool":
        return float(bool(registers[0])) * point.scale + point.offset
    regs = [int(r) for r in registers[:point.width]]
    if point.byte_order == "little":
        regs = _swap_bytes(regs)
    raw = ModbusSerialClient.convert_from_registers(regs, _PYMODBUS[point.type], word_order=point.word_order)
    assert isinstance(raw, (int, float))
    return float(raw) * point.scale + point.offset


def encode_point(point: RegisterPoint, value: float) -> list[int]:
    """Registers to write so that ``point`` reads back ``value``; ValueError if it cannot."""
    raw = (value - point.offset) / point.scale
    if point.type != "float32":
        if abs(raw - round(raw)) > 1e-6:
            raise ValueError(f"{value} is not a whole number of {point.scale} steps for {point.name}")
        raw = int(round(raw))
    try:
        regs = ModbusSerialClient.convert_to_registers(raw, _PYMODBUS[point.type], word_order=point.word_order)
    except (struct.error, OverflowError) as exc:  # pymodbus packs with struct: out of range
        raise ValueError(f"{value} does not fit {point.name} ({point.type}): {exc}") from exc
    return _swap_bytes(regs) if point.byte_order == "little" else regs


def tcp_client(host: str, port: int, *, timeout_s: float, retries: int) -> ModbusTcpClient:
    """A pymodbus TCP client (not yet connected) for the drivers of every unit behind ``host:port``."""
    return ModbusTcpClient(host, port=port, timeout=timeout_s, retries=retries)


class ModbusDriver:
    """One Modbus device (``unit``) on a pymodbus client (serial or TCP) shared by its bus."""

    def __init__(self, client: ModbusBaseSyncClient, unit: int, points: tuple[RegisterPoint, ...]) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"Modbus unit id {unit} outside 1-247")
        self.client = client
        self.unit = unit
        self.points = {p.name: p for p in points}
        self.blocks = plan_reads(points)
        self.counters = FrameCounters()

    def _read_block(self, block: Block) -> list[int] | list[bool]:
        read = {"holding": self.client.read_holding_registers, "input": self.client.read_input_registers,
                "coil": self.client.read_coils, "discrete": self.client.read_discrete_inputs}[block.table]
        try:
            reply = read(block.address, count=block.count, device_id=self.unit)
        except ConnectionException as exc:  # the port or the TCP connection, not this unit
            raise TransportError(f"unit {self.unit}: {exc}") from exc
        except ModbusException as exc:  # no reply after pymodbus's retries, or a garbled one
            self.counters.error("no-answer")
            raise NoAnswer(f"unit {self.unit}: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"unit {self.unit}: {exc}") from exc
        if reply.isError():
            error = modbus_error(reply)
            if _gateway_lost_unit(reply):
                self.counters.error("gateway-no-answer")
                raise NoAnswer(f"unit {self.unit}: {error}")
            self.counters.error("exception-reply")
            raise error
        self.counters.frames += 1
        return reply.bits if block.table in ("coil", "discrete") else reply.registers

    def poll(self) -> PointRead:
        read = PointRead()
        answered = False
        for block in self.blocks:
            try:
                data = self._read_block(block)
            except NoAnswer as exc:
                read.errors.update({p.name: str(exc) for p in block.points})
                continue
            except ModbusReplyError as exc:
                answered = True
                read.errors.update({p.name: str(exc) for p in block.points})
                continue
            answered = True
            for p in block.points:
                i = p.address - block.address
                read.values[p.name] = decode_point(p, data[i:i + p.width])
        if not answered:
            raise NoAnswer(f"unit {self.unit} did not answer")
        return read

    def write(self, point_name: str, value: float) -> None:
        point = self.points[point_name]
        try:
            if point.table == "coil":
                reply = self.client.write_coil(point.address, bool(value), device_id=self.unit)
            elif point.table == "holding":
                regs = encode_point(point, value)
                reply = (self.client.write_register(point.address, regs[0], device_id=self.unit) if len(regs) == 1
                         else self.client.write_registers(point.address, regs, device_id=self.unit))
            else:
                raise ValueError(f"{point.table} points are read-only in Modbus")
        except ConnectionException as exc:
            raise TransportError(f"unit {self.unit}: {exc}") from exc
        except ModbusException as exc:
            raise NoAnswer(f"unit {self.unit}: {exc}") from exc
        if reply.isError():
            if _gateway_lost_unit(reply):
                raise NoAnswer(f"unit {self.unit}: {modbus_error(reply)}")
            raise modbus_error(reply)


_EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
               4: "device failure", 6: "device busy", 10: "gateway path unavailable",
               11: "gateway target device failed to respond"}


def _gateway_lost_unit(reply: object) -> bool:
    """A TCP-to-RTU gateway answered for a unit that is silent or unreachable behind it."""
    return getattr(reply, "exception_code", 0) in (10, 11)


def modbus_error(reply: object) -> ModbusReplyError:
    code = getattr(reply, "exception_code", 0)
    return ModbusReplyError(f"exception {code}: {_EXCEPTIONS.get(code, 'unknown')}")
