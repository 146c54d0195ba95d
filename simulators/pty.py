"""A simulated device's end of a pseudo-terminal, served by a thread of its own.

The simulator holds the master side; a driver opens :attr:`PtyDevice.port` (the slave
side) with pyserial exactly as it would open /dev/ttyUSB0. Subclasses implement
``_run``, which must return once :attr:`_stop_r` becomes readable.
"""

import os
import threading
import tty
from typing import Self


class PtyDevice:
    def __init__(self, name: str) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.port = os.ttyname(self._slave)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"{name}-{self.port}", daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the pseudo-terminal; a second call does nothing."""
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_w = -1

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
