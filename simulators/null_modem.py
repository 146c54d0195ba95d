"""Two pseudo-terminals wired back to back, like a null-modem cable (or socat's pty,pty).

Each end is a real tty path that pyserial opens; whatever one side writes, the other
reads. Used to connect two independent implementations (ours and a third party's)
that both insist on opening a port by name.
"""

import os
import select
import threading
import tty


class NullModem:
    def __init__(self) -> None:
        self._a_master, self._a_slave = os.openpty()
        self._b_master, self._b_slave = os.openpty()
        for fd in (self._a_master, self._a_slave, self._b_master, self._b_slave):
            tty.setraw(fd)
        self.port_a = os.ttyname(self._a_slave)
        self.port_b = os.ttyname(self._b_slave)
        self.bytes_relayed = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="null-modem", daemon=True)

    def __enter__(self) -> "NullModem":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._a_master, self._a_slave, self._b_master, self._b_slave, self._stop_r, self._stop_w):
            os.close(fd)

    def _relay(self) -> None:
        peer = {self._a_master: self._b_master, self._b_master: self._a_master}
        while True:
            readable, _, _ = select.select([self._a_master, self._b_master, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                    os.write(peer[fd], data)
                except OSError:
                    continue
                self.bytes_relayed += len(data)
