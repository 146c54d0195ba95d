"""A Plantower PMS5003 answering on a pseudo-terminal, byte for byte as the hardware does.

The simulator holds the master side; a driver opens :attr:`PtyPms5003.port` (the slave
side) with pyserial exactly as it would open /dev/ttyUSB0. Passive mode answers each
read command with one 32-byte frame; active mode streams a frame every ``interval_s``.

Commands are answered as a PMSx003 does (PMS7003 manual, appendix II; pypms 0.8.1,
which was written against real sensors, expects the same):

    0xE1 mode      8-byte acknowledgement (``42 4D 00 04 E1 00 01 74`` for passive)
    0xE4 sleep     8-byte acknowledgement, then nothing at all until woken
    0xE4 wake      one 32-byte data frame; the mode set before the sleep still holds
    0xE2 read      one 32-byte data frame, in passive mode only

A sleeping sensor ignores every command but wake. The manuals do not say what wake
answers; the data frame is what pypms reads after it (its ``wake`` command expects the
``42 4D 00 1C`` header and 32 bytes, and its own test stub of a PMSx003 sends one).
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
        self.acks_sent = 0
        self.asleep = False
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
        if self.stop_answering:
            return
        raw = self.frame()
        self.frames_sent += 1  # counted before it is written: a reader may check as soon as it has it
        os.write(self._master, raw)

    def _send_ack(self, cmd: int, data: int) -> None:
        if self.stop_answering:
            return
        self.acks_sent += 1
        os.write(self._master, pms5003.encode_ack(cmd, data))

    def _run(self) -> None:
        buf = b""
        next_active = time.monotonic()
        while True:
            streaming = self.active and not self.asleep
            timeout = max(0.0, next_active - time.monotonic()) if streaming else None
            readable, _, _ = select.select([self._master, self._stop_r], [], [], timeout)
            if self._stop_r in readable:
                return
            if self._master in readable:
                try:
                    buf += os.read(self._master, 256)
                except OSError:  # no reader on the slave side right now
                    time.sleep(0.05)
                    continue
                was_asleep = self.asleep
                buf = self._handle_commands(buf)
                if was_asleep and not self.asleep:  # the wake frame starts the interval anew
                    next_active = time.monotonic() + self.interval_s
            if self.active and not self.asleep and time.monotonic() >= next_active:
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
            if cmd == pms5003.CMD_SLEEP and data == 1:
                self.asleep = False
                self._send_frame()
            elif self.asleep:
                continue
            elif cmd == pms5003.CMD_SLEEP:
                self.asleep = True  # before the acknowledgement, which a reader may act on at once
                self._send_ack(cmd, data)
            elif cmd == pms5003.CMD_MODE:
                self.active = data == 1
                self._send_ack(cmd, data)
            elif cmd == pms5003.CMD_READ and not self.active:
                self._send_frame()
        return buf
