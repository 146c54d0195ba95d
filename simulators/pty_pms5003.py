"""A Plantower PMS5003 answering on a pseudo-terminal, byte for byte as the hardware does.

The simulator holds the master side; a driver opens :attr:`PtyPms5003.port` (the slave
side) with pyserial exactly as it would open /dev/ttyUSB0. Passive mode answers each
read command with one 32-byte frame; active mode streams a frame every ``interval_s``.
"""

import os
import select
import time

from contract.classes import DeviceClass
from firmware_adapters import pms5003
from simulators.pty import PtyDevice
from simulators.signals import Device, Fault


class PtyPms5003(PtyDevice):
    def __init__(self, seed: int, *, faults: tuple[Fault, ...] = (), interval_s: float = 1.0,
                 active: bool = False) -> None:
        self._device = Device(DeviceClass.AIR_QUALITY, seed, faults)
        self.active = active
        self.interval_s = interval_s
        self.frames_sent = 0
        self.commands = 0
        self.bad_commands = 0
        self.stop_answering = False  # fault injection: the sensor goes silent
        self._start = time.monotonic()
        super().__init__("pms5003")

    def frame(self) -> bytes:
        values = self._device.sample(time.monotonic() - self._start)
        pm1, pm25, pm10 = (int(values[k]) for k in ("pm1_0", "pm2_5", "pm10"))
        reading = pms5003.Reading(pm1, pm25, pm10, pm1, pm25, pm10,
                                  pm1 * 60, pm1 * 18, pm25 * 4, pm25, pm10 // 4, pm10 // 10)
        return pms5003.encode_reading(reading)

    def _send_frame(self) -> None:
        os.write(self._master, self.frame())
        self.frames_sent += 1

    def _run(self) -> None:
        buf = b""
        next_active = time.monotonic()
        while True:
            timeout = max(0.0, next_active - time.monotonic()) if self.active else None
            readable, _, _ = select.select([self._master, self._stop_r], [], [], timeout)
            if self._stop_r in readable:
                return
            if self._master in readable:
                try:
                    buf += os.read(self._master, 256)
                except OSError:  # no reader on the slave side right now
                    time.sleep(0.05)
                    continue
                buf = self._handle_commands(buf)
            if self.active and time.monotonic() >= next_active:
                self._send_frame()
                next_active = time.monotonic() + self.interval_s

    def _handle_commands(self, buf: bytes) -> bytes:
        while buf:
            used, command = pms5003.decode_command(buf)
            if used == 0:
                break
            buf = buf[used:]
            if command is None:
                self.bad_commands += 1
                continue
            self.commands += 1
            cmd, data = command
            if cmd == pms5003.CMD_MODE:
                self.active = data == 1
            elif cmd == pms5003.CMD_READ and not self.active and not self.stop_answering:
                self._send_frame()
        return buf
