"""Shared fixtures: real brokers (Mosquitto and the embedded amqtt) on free ports."""

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from midbrain.broker import BrokerProcess, mosquitto_path
from midbrain.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "demo.toml"


def _broker(kind: str, tmp_path: Path) -> Iterator[MqttEndpoint]:
    if kind == "mosquitto" and mosquitto_path() is None:
        pytest.fail("mosquitto is not installed: run the README's test command, which installs it")
    with BrokerProcess.choose(kind, tmp_path / kind) as broker:
        yield MqttEndpoint(host=broker.host, port=broker.port, reconnect_initial_s=0.05, reconnect_max_s=0.5)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MqttEndpoint]:
    """A Mosquitto of this test's own, on a free loopback port."""
    yield from _broker("mosquitto", tmp_path)


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[MqttEndpoint]:
    """The embedded amqtt broker (``midbrain broker``) in its own process."""
    yield from _broker("amqtt", tmp_path)


@pytest.fixture(params=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MqttEndpoint]:
    yield from _broker(request.param, tmp_path)


@pytest.fixture(scope="session")
def community() -> Community:
    return load_config(DEMO_CONFIG).community


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves non-daemon threads running (a service that did not stop)."""
    before = set(threading.enumerate())
    yield
    deadline = 5.0
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
                and not t.name.startswith(("asyncio_", "ThreadPoolExecutor", "AnyIO"))]
        if not left:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {[t.name for t in left]}")


def mosquitto_client(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install mosquitto-clients)")
    return path


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (sync or async) until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


LEVELS = {"unit", "integration", "real"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test declares its level, so that `-m unit|integration|real` selects all of them."""
    missing = [item.nodeid for item in items if not LEVELS & {m.name for m in item.iter_markers()}]
    if missing:
        raise pytest.UsageError(f"tests without a level marker ({', '.join(sorted(LEVELS))}): {missing}")


_SESSION_START = 0.0


def pytest_sessionstart(session: pytest.Session) -> None:
    global _SESSION_START
    import time

    _SESSION_START = time.monotonic()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One timing line for every CI phase (scripts/test passes the earlier ones), so drift shows."""
    import os
    import time

    phases = os.environ.get("MIDBRAIN_CI_PHASES", "")
    tests_s = time.monotonic() - _SESSION_START
    terminalreporter.write_line(f"phases: {phases + ' ' if phases else ''}tests={tests_s:.0f}s")
