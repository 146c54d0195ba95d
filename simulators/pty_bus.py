"""Serial devices answering on a pseudo-terminal, byte for byte as the hardware does.

One :class:`PtyBus` is one RS-485 bus: several devices of one protocol share it and
each answers only to its own address. The simulator holds the master side of the pty;
an agent opens :attr:`PtyBus.port` with pyserial exactly as it would open /dev/ttyUSB0.

Wire time is honoured: a reply is written no earlier than the request and the reply
would have taken on a real line at ``baudrate`` (``bits_per_char`` per byte, 11 for
8E1), plus ``turnaround_s``. Faults, per device and changeable at run time:
``no_answer``, ``bad_checksum``, ``garbage`` (noise before the reply), ``slow``
(reply after ``slow_s``), ``wrong_address`` (reply carries another address).
"""

import math
import os
import random
import select
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime

from pymodbus.framer import FramerRTU

from firmware_adapters import cjt188, dlt645
from simulators.pty import PtyDevice


@dataclass
class Faults:
    no_answer: bool = False
    bad_checksum: float = 0.0  # probability per reply
    garbage: float = 0.0
    slow: float = 0.0
    slow_s: float = 2.0
    wrong_address: float = 0.0


class BusDevice:
    """A device on a bus: ``answer(request)`` gives the reply bytes, or None to stay silent."""

    address: str
    faults: Faults

    def answer(self, request: object, now: float) -> bytes | None:
        raise NotImplementedError

    def wrong_address_reply(self, request: object, now: float) -> bytes | None:
        return None


# -- DL/T 645-2007 ------------------------------------------------------------------------


class Dlt645Meter(BusDevice):
    """A single-phase meter whose energy only ever increases."""

    def __init__(self, address: str, seed: int, faults: Faults | None = None) -> None:
        self.address = address
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self.energy = round(self._rng.uniform(100, 9000), 2)
        self._t = time.monotonic()
        self.unsupported: set[int] = set()  # data identifiers answered with an abnormal reply

    def values(self, now: float) -> dict[str, float]:
        r = self._rng
        hour = datetime.now().hour + datetime.now().minute / 60
        load_kw = max(0.05, 0.8 + 0.7 * math.sin((hour - 7) / 24 * 2 * math.pi) + r.gauss(0, 0.08))
        dt = max(0.0, now - self._t)
        self._t = now
        self.energy = round(self.energy + load_kw * dt / 3600 + 0.01 * (dt > 0), 2)
        voltage = round(r.gauss(221.0, 1.5), 1)
        current = round(load_kw * 1000 / voltage, 3)
        return {"energy_total": self.energy, "energy_forward": self.energy, "voltage_a": voltage,
                "current_a": current, "power_total": round(load_kw, 4)}

    def answer(self, request: object, now: float) -> bytes | None:
        assert isinstance(request, dlt645.Frame)
        if request.control == dlt645.READ_ADDRESS and request.address == dlt645.WILDCARD:
            return dlt645.encode(self.address, dlt645.REPLY | dlt645.READ_ADDRESS, dlt645.encode_address(self.address))
        if request.address != self.address:
            return None
        if request.control != dlt645.READ_DATA or len(request.data) != 4:
            return dlt645.error_reply(self.address, request.function, 0x01)
        di = int.from_bytes(request.data, "little")
        quantity = dlt645.BY_DI.get(di)
        if quantity is None or di in self.unsupported:
            return dlt645.error_reply(self.address, dlt645.READ_DATA, 0x02)
        return dlt645.read_reply(self.address, quantity, self.values(now)[quantity.name])

    def wrong_address_reply(self, request: object, now: float) -> bytes | None:
        other = f"{(int(self.address) + 1) % 10**12:012d}"
        assert isinstance(request, dlt645.Frame)
        quantity = dlt645.BY_DI.get(int.from_bytes(request.data[:4], "little"))
        return dlt645.read_reply(other, quantity, 0.0) if quantity else None


# -- CJ/T 188-2004 -------------------------------------------------------------------------


class Cjt188Meter(BusDevice):
    """A cold-water meter: day-time use, nothing at night, unless a leak is injected."""

    def __init__(self, address: str, seed: int, *, meter_type: int = 0x10, faults: Faults | None = None,
                 leak: bool = False, battery_low: bool = False) -> None:
        self.address = address
        self.meter_type = meter_type
        self.faults = faults or Faults()
        self.leak = leak
        self.battery_low = battery_low
        self.valve = "open"
        self._rng = random.Random(seed)
        self.total = round(self._rng.uniform(10, 900), 2)
        self.settlement = self.total
        self._t = time.monotonic()

    def flow_lpm(self, hour: float) -> float:
        night = hour < 5 or hour >= 23
        base = 0.6 if self.leak else 0.0  # a leak is continuous flow through the night
        if night or self.valve != "open":
            return base if self.valve == "open" else 0.0
        return base + max(0.0, self._rng.gauss(1.5, 1.0))

    def answer(self, request: object, now: float) -> bytes | None:
        assert isinstance(request, cjt188.Frame)
        if request.function == cjt188.READ_ADDRESS and request.address == cjt188.WILDCARD:
            return cjt188.encode(self.meter_type, self.address, cjt188.REPLY | cjt188.READ_ADDRESS,
                                 cjt188.DI_ADDRESS + b"\x00")
        if request.address != self.address or request.meter_type not in (self.meter_type, 0xAA):
            return None
        ser = request.data[2] if len(request.data) >= 3 else 0
        if request.function != cjt188.READ_DATA or request.data[:2] not in cjt188.DI_METERING_ORDERS:
            return cjt188.error_reply(self.meter_type, self.address, ser)
        dt = max(0.0, now - self._t)
        self._t = now
        clock = datetime.now()
        self.total = round(self.total + self.flow_lpm(clock.hour + clock.minute / 60) * dt / 1000 / 60, 2)
        return cjt188.metering_reply(self.meter_type, self.address, ser, self.total, self.settlement,
                                     clock.replace(microsecond=0), self.valve, self.battery_low,
                                     di=request.data[:2])


# -- Modbus RTU ----------------------------------------------------------------------------


class ModbusSlave(BusDevice):
    """A Modbus temperature/humidity/relay unit with a small register map.

    Holding 0: temperature int16 x0.1 °C; 1: humidity uint16 x0.1 %RH; 2-3: energy
    float32 (big word order); 10: report interval s (writable). Coil 0: relay. Input
    registers read the same as holding ones. The same unit answers RTU frames here and
    Modbus TCP requests in :mod:`simulators.modbus_tcp`.
    """

    WRITABLE = frozenset({10})  # holding registers a master may write

    def __init__(self, unit: int, seed: int, faults: Faults | None = None) -> None:
        self.address = str(unit)
        self.unit = unit
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self.holding = [0] * 16
        self.holding[10] = 30
        self.coils = [False] * 8
        self.energy = self._rng.uniform(10, 100)

    def refresh(self) -> None:
        """New readings, as every read of the registers gets."""
        r = self._rng
        self.holding[0] = round(r.gauss(23.0, 0.4) * 10) & 0xFFFF
        self.holding[1] = round(min(100, max(0, r.gauss(55.0, 2))) * 10)
        self.energy += 0.01
        hi, lo = struct.unpack(">HH", struct.pack(">f", self.energy))
        self.holding[2], self.holding[3] = hi, lo

    def answer(self, request: object, now: float) -> bytes | None:
        assert isinstance(request, bytes)
        if request[0] != self.unit:
            return None
        fc = request[1]
        body = self._handle(fc, request[2:-2])
        return _crc(bytes((self.unit,)) + body)

    def _handle(self, fc: int, data: bytes) -> bytes:
        def exception(code: int) -> bytes:
            return bytes((fc | 0x80, code))
        if fc in (3, 4, 1, 2):
            start, count = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
            if fc in (3, 4):
                self.refresh()
                if count < 1 or start + count > len(self.holding):
                    return exception(2)
                payload = b"".join(v.to_bytes(2, "big") for v in self.holding[start:start + count])
            else:
                if count < 1 or start + count > len(self.coils):
                    return exception(2)
                bits = sum(1 << i for i, b in enumerate(self.coils[start:start + count]) if b)
                payload = bits.to_bytes((count + 7) // 8, "little")
            return bytes((fc, len(payload))) + payload
        if fc == 6:
            addr = int.from_bytes(data[0:2], "big")
            if addr not in self.WRITABLE:
                return exception(2)
            self.holding[addr] = int.from_bytes(data[2:4], "big")
            return bytes((fc,)) + data[:4]
        if fc == 5:
            addr = int.from_bytes(data[0:2], "big")
            if addr >= len(self.coils):
                return exception(2)
            self.coils[addr] = data[2] == 0xFF
            return bytes((fc,)) + data[:4]
        return exception(1)


def _crc(frame: bytes) -> bytes:
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


def decode_modbus_request(buf: bytes) -> tuple[int, bytes | None, str | None]:
    """(used, request, error) for an RTU request at the start of ``buf``; used 0 = need more."""
    if len(buf) < 2:
        return 0, None, None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        length = 8
    elif fc in (15, 16):
        if len(buf) < 7:
            return 0, None, None
        length = 9 + buf[6]
    else:
        return 1, None, "bad-function"
    if len(buf) < length:
        return 0, None, None
    frame = buf[:length]
    if FramerRTU.compute_CRC(frame[:-2]) != int.from_bytes(frame[-2:], "big"):
        return 1, None, "crc"
    return length, frame, None


# -- Line-oriented ASCII sensor -----------------------------------------------------------


class LineSensorDevice(BusDevice):
    """A cheap MCU board printing ``T=23.5,H=61.2`` (or JSON) when sent ``READ``."""

    def __init__(self, seed: int, *, json_format: bool = False, faults: Faults | None = None) -> None:
        self.address = "line"
        self.json_format = json_format
        self.faults = faults or Faults()
        self._rng = random.Random(seed)

    def answer(self, request: object, now: float) -> bytes | None:
        t, h = round(self._rng.gauss(22.0, 0.5), 1), round(self._rng.gauss(60.0, 2.0), 1)
        if self.json_format:
            return f'{{"t": {t}, "h": {h}, "fw": "1.2"}}\r\n'.encode()
        return f"T={t},H={h}\r\n".encode()


# -- the bus -------------------------------------------------------------------------------


@dataclass
class BusCounters:
    requests: int = 0
    replies: int = 0
    bad_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class PtyBus(PtyDevice):
    PROTOCOLS = ("dlt645", "cjt188", "modbus", "line")

    def __init__(self, protocol: str, devices: list[BusDevice], *, baudrate: int = 9600, bits_per_char: int = 10,
                 turnaround_s: float = 0.0, seed: int = 0) -> None:
        if protocol not in self.PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(self.PROTOCOLS)}")
        self.protocol = protocol
        self.devices = devices
        self.byte_time = bits_per_char / baudrate
        self.turnaround_s = turnaround_s
        self.counters = BusCounters()
        self._rng = random.Random(seed)
        super().__init__(f"bus-{protocol}")

    def wire_time(self, n_bytes: int) -> float:
        return n_bytes * self.byte_time

    def _next_request(self, buf: bytes) -> tuple[int, object | None]:
        if self.protocol == "dlt645":
            d = dlt645.decode(buf)
            if d.error:
                self.counters.bad_requests += 1
            return d.used, d.frame
        if self.protocol == "cjt188":
            c = cjt188.decode(buf)
            if c.error:
                self.counters.bad_requests += 1
            return c.used, c.frame
        if self.protocol == "modbus":
            used, frame, error = decode_modbus_request(buf)
            if error:
                self.counters.bad_requests += 1
            return used, frame
        # line: every line is a request ("READ")
        end = buf.find(b"\n")
        return (end + 1, buf[:end].strip()) if end >= 0 else (0, None)

    def _fault(self, name: str) -> None:
        self.counters.faults[name] = self.counters.faults.get(name, 0) + 1

    def _reply_for(self, device: BusDevice, request: object, now: float) -> tuple[bytes | None, float]:
        f, r = device.faults, self._rng
        if f.no_answer:
            self._fault("no_answer")
            return None, 0.0
        if f.wrong_address and r.random() < f.wrong_address:
            self._fault("wrong_address")
            return device.wrong_address_reply(request, now), 0.0
        reply = device.answer(request, now)
        if reply is None:
            return None, 0.0
        delay = 0.0
        if f.bad_checksum and r.random() < f.bad_checksum:
            self._fault("bad_checksum")
            reply = reply[:-2] + bytes(((reply[-2] + 1) & 0xFF,)) + reply[-1:]
        if f.garbage and r.random() < f.garbage:
            self._fault("garbage")
            reply = bytes(r.randrange(256) for _ in range(r.randint(1, 12))).replace(b"\x68", b"\x00") + reply
        if f.slow and r.random() < f.slow:
            self._fault("slow")
            delay = f.slow_s
        return reply, delay

    def _run(self) -> None:
        buf = b""
        arrived_at = 0.0  # when the first byte of the pending request arrived
        consumed = 0  # bytes of the pending request (wake-up bytes included) on the wire so far
        while True:
            readable, _, _ = select.select([self._master, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # nobody holds the slave side open right now
                time.sleep(0.05)
                continue
            if not buf:
                arrived_at = time.monotonic()
            buf += chunk
            while buf:
                used, request = self._next_request(buf)
                if used == 0:
                    break
                buf = buf[used:]
                consumed += used
                if request is None:
                    continue
                self.counters.requests += 1
                self._answer(request, arrived_at + self.wire_time(consumed))
                arrived_at, consumed = time.monotonic(), 0

    def _answer(self, request: object, request_done: float) -> None:
        now = time.monotonic()
        for device in self.devices:
            reply, delay = self._reply_for(device, request, now)
            if reply is None:
                continue
            pause = max(request_done, now) + self.turnaround_s + delay + self.wire_time(len(reply)) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                os.write(self._master, reply)
            except OSError:
                return
            self.counters.replies += 1
            return  # one device answers a request on a half-duplex bus


def dlt645_bus(count: int, *, first_address: int = 1, seed: int = 0, **kw: object) -> PtyBus:
    meters: list[BusDevice] = [Dlt645Meter(f"{first_address + i:012d}", seed + i) for i in range(count)]
    return PtyBus("dlt645", meters, seed=seed, **kw)  # type: ignore[arg-type]


def cjt188_bus(count: int, *, first_address: int = 1, seed: int = 0, leak: tuple[int, ...] = (),
               **kw: object) -> PtyBus:
    meters: list[BusDevice] = [Cjt188Meter(f"{first_address + i:014d}", seed + i, leak=i in leak)
                               for i in range(count)]
    return PtyBus("cjt188", meters, seed=seed, **kw)  # type: ignore[arg-type]


def modbus_bus(count: int, *, first_unit: int = 1, seed: int = 0, **kw: object) -> PtyBus:
    return PtyBus("modbus", [ModbusSlave(first_unit + i, seed + i) for i in range(count)], seed=seed, **kw)  # type: ignore[arg-type]


def line_bus(*, json_format: bool = False, seed: int = 0, **kw: object) -> PtyBus:
    return PtyBus("line", [LineSensorDevice(seed, json_format=json_format)], seed=seed, **kw)  # type: ignore[arg-type]
