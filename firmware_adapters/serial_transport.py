"""Byte transports for serial devices. Drivers receive one; they never open ports themselves."""

import logging
import termios
from typing import Protocol

import serial

from firmware_adapters import AdapterError

log = logging.getLogger(__name__)

# What pyserial lets through when a port fails: termios.error (for example EIO when a USB
# adapter is unplugged or a pseudo-terminal's other side closes) is not an OSError.
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)


class TransportError(AdapterError):
    """The link to the device failed (port missing, unplugged, I/O error)."""


class ByteTransport(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, size: int) -> bytes: ...
    def read_some(self, limit: int) -> bytes: ...
    def reset_input(self) -> None: ...
    def close(self) -> None: ...


class SerialTransport:
    """A pyserial port (a real UART, a USB adapter or a pseudo-terminal)."""

    def __init__(self, port: str, baudrate: int = 9600, timeout_s: float = 1.0, *,
                 parity: str = "N", bytesize: int = 8, stopbits: int = 1) -> None:
        self.port = port
        try:
            self._serial = serial.Serial(port, baudrate=baudrate, timeout=timeout_s, parity=parity,
                                         bytesize=bytesize, stopbits=stopbits)
        except _PORT_ERRORS as exc:
            raise TransportError(f"cannot open {port}: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
            self._serial.flush()
        except _PORT_ERRORS as exc:
            raise TransportError(f"write to {self.port} failed: {exc}") from exc

    def read(self, size: int) -> bytes:
        try:
            return self._serial.read(size)
        except _PORT_ERRORS as exc:
            raise TransportError(f"read from {self.port} failed: {exc}") from exc

    def read_some(self, limit: int) -> bytes:
        """At least one byte (or none at the timeout), then whatever else has already arrived."""
        try:
            first = self._serial.read(1)
            if not first:
                return first
            waiting = min(self._serial.in_waiting, limit - 1)
            return first + (self._serial.read(waiting) if waiting > 0 else b"")
        except _PORT_ERRORS as exc:
            raise TransportError(f"read from {self.port} failed: {exc}") from exc

    def reset_input(self) -> None:
        try:
            self._serial.reset_input_buffer()
        except _PORT_ERRORS as exc:
            raise TransportError(f"flush of {self.port} failed: {exc}") from exc

    def close(self) -> None:
        self._serial.close()
