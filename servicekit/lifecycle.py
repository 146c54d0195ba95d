"""Run a service until SIGTERM/SIGINT, then let it shut down cleanly."""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Log lines with time, level and logger to stderr (where systemd's journal picks them up)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def stop_cleanly_before_start() -> None:
    """Called first thing by a service's process: a SIGTERM that arrives before
    :func:`run_until_signalled` has its loop up (while modules load and the configuration is
    read, nothing started yet) ends the process with status 0, as a SIGTERM does once the
    service runs. Left to the default action, it would end with 143."""
    signal.signal(signal.SIGTERM, _exit_cleanly)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a fresh event loop; SIGTERM and SIGINT set ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)  # which sets the default action, not the one before
                if handler is not None:
                    signal.signal(sig, handler)

    asyncio.run(runner())


def write_json_atomically(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that a reader never sees a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, target)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True if ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them, cancelling again any that carried on.

    Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as the future it
    waits for completes, and aiomqtt awaits every PUBACK and SUBACK through it (so does
    wait_or_stop above). An MQTT reader cancelled while its handler published went back to
    waiting for messages, and the link never closed (seen as a city platform that would not
    stop, one run in five of tests/cloud_bridge/test_city_mqtt.py).
    """
    tasks = list(tasks)
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: the session is over either way
