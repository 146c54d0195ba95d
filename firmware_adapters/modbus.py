"""Modbus RTU register maps: declarative points, decoded with pymodbus's own converters.

The protocol itself (RTU framing, CRC, retries, exception replies) is pymodbus's; this
module only says where a point lives and how its registers become a number::

    table      holding | input | coil | discrete
    address    0-based register (or coil) number
    type       int16 uint16 int32 uint32 float32 (coils and discrete inputs: bool)
    byte_order big ("AB") or little ("BA") within each 16-bit register
    word_order big (high word first, "ABCD") or little ("CDAB")
    value      raw * scale + offset

Reads are planned as few requests as possible: points of one table whose registers
are contiguous (or nearly, see ``max_gap``) share one request of at most 125 registers.
"""

import struct
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import ModbusSerialClient

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]

_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
_PYMODBUS = {"int16": ModbusSerialClient.DATATYPE.INT16, "uint16": ModbusSerialClient.DATATYPE.UINT16,
             "int32": ModbusSerialClient.DATATYPE.INT32, "uint32": ModbusSerialClient.DATATYPE.UINT32,
             "float32": ModbusSerialClient.DATATYPE.FLOAT32}
MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    name: str
    table: Table
    address: int
    type: DataType = "uint16"
    byte_order: Literal["big", "little"] = "big"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        bits = self.table in ("coil", "discrete")
        if bits != (self.type == "bool"):
            raise ValueError(f"point {self.name}: {self.table} needs type "
                             f"{'bool' if bits else 'a register type'}, not {self.type}")
        if not 0 <= self.address <= 0xFFFF:
            raise ValueError(f"point {self.name}: address {self.address} outside 0-65535")
        if self.scale == 0:
            raise ValueError(f"point {self.name}: scale must not be 0")

    @property
    def width(self) -> int:
        return _WIDTH[self.type]


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    points: tuple[RegisterPoint, ...]


def plan_reads(points: tuple[RegisterPoint, ...], max_gap: int = 4) -> list[Block]:
    blocks: list[Block] = []
    for table in ("holding", "input", "coil", "discrete"):
        limit = MAX_BITS if table in ("coil", "discrete") else MAX_REGISTERS
        current: list[RegisterPoint] = []
        start = end = 0
        for p in sorted((p for p in points if p.table == table), key=lambda p: p.address):
            p_end = p.address + p.width
            if current and p.address - end <= max_gap and p_end - start <= limit:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


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
