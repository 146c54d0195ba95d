"""Modbus register maps: declarative points and read planning (pure; no pymodbus import).

Where a point lives and how its registers become a number (decoding, with pymodbus's
own converters, is in :mod:`firmware_adapters.modbus`)::

    table      holding | input | coil | discrete
    address    0-based register (or coil) number
    type       int16 uint16 int32 uint32 float32 (coils and discrete inputs: bool)
    byte_order big ("AB") or little ("BA") within each 16-bit register
    word_order big (high word first, "ABCD") or little ("CDAB")
    value      raw * scale + offset

Reads are planned as few requests as possible: points of one table whose registers
are contiguous (or nearly, see ``max_gap``) share one request of at most 125 registers.
"""

from dataclasses import dataclass
from typing import Literal

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]

_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
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


