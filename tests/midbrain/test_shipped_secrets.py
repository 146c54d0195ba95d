"""No service runs on a secret that ships in this repository, outside the demo that says so."""

import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from contract.endpoints import MqttEndpoint
from midbrain.broker import free_port
from midbrain.config import load_config
from midbrain.shipped import SHIPPED_SHA256, SERVICE_SECTIONS, secret_settings
from tests.conftest import DEMO_CONFIG, REPO

SECRETS = {"bridge": ["bridge.community_key", "bridge.device_salt", "bridge.city_public_key"],
           "city": ["city.community_keys.xihu-demo", "city.signing_key", "city.operator_token"],
           "hub": ["hub.city_public_key"]}


def _midbrain(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "midbrain.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _isolated(tmp_path: Path) -> dict[str, str]:
    """Ports and files of this test's own, should a service start after all."""
    return {"MIDBRAIN_MQTT__PORT": str(free_port()), "MIDBRAIN_HUB__HTTP_PORT": str(free_port()),
            "MIDBRAIN_HUB__DATABASE": str(tmp_path / "hub.sqlite3"), "MIDBRAIN_CITY__HTTP_PORT": str(free_port()),
            "MIDBRAIN_CITY__DATABASE": str(tmp_path / "city.sqlite3"), "MIDBRAIN_BRIDGE__HTTP_PORT": str(free_port()),
            "MIDBRAIN_BRIDGE__OUTBOX": str(tmp_path / "outbox.sqlite3")}


def _demo_copy(tmp_path: Path) -> Path:
    """config/demo.toml as an operator might copy it for a deployment: without its demo flag."""
    copy = tmp_path / "community.toml"
    copy.write_text(DEMO_CONFIG.read_text().replace("\ndemo = true\n", "\n"))
    assert "demo = true" not in copy.read_text()
    for path in (REPO / "config" / "devices").glob("*.toml"):  # its device files, as config check reads them
        (tmp_path / "devices").mkdir(exist_ok=True)
        (tmp_path / "devices" / path.name).write_text(path.read_text())
    return copy


@pytest.mark.unit
def test_every_secret_shipped_in_the_repository_is_recognised() -> None:
    shipped = [p for p in (*(REPO / "config").rglob("*.toml"), *(REPO / "midbrain" / "defaults").rglob("*"))
               if p.is_file() and "demo = true" in p.read_text(errors="replace")]
    assert DEMO_CONFIG in shipped
    for path in shipped:
        cfg = load_config(path)
        found = [(name, value) for section in ("mqtt", "hub", "bridge", "city")
                 for name, value in secret_settings(getattr(cfg, section), section + ".")]
        assert found, path
        for name, value in found:
            assert hashlib.sha256(value.encode()).hexdigest() in SHIPPED_SHA256, f"{path}: {name} is not listed"


@pytest.mark.real
@pytest.mark.parametrize("service", sorted(SERVICE_SECTIONS))
def test_a_service_refuses_a_copy_of_the_demo_config_naming_each_setting(tmp_path: Path, service: str) -> None:
    result = _midbrain(service, "--config", str(_demo_copy(tmp_path)), env=_isolated(tmp_path), timeout=30)
    assert result.returncode == 2, result.stderr
    for name in SECRETS[service]:
        assert f"{name} is the demo's published" in result.stderr
    assert "midbrain config new" in result.stderr


@pytest.mark.real
def test_the_demo_flag_comes_from_the_file_not_the_environment(tmp_path: Path) -> None:
    env = {**_isolated(tmp_path), "MIDBRAIN_DEMO": "true"}
    result = _midbrain("city", "--config", str(_demo_copy(tmp_path)), env=env, timeout=30)
    assert result.returncode == 2 and "city.signing_key is the demo's published value" in result.stderr


@pytest.mark.real
@pytest.mark.parametrize("service", sorted(SERVICE_SECTIONS))
def test_a_service_given_no_config_refuses(tmp_path: Path, service: str) -> None:
    result = _midbrain(service, env=_isolated(tmp_path), timeout=30)
    assert result.returncode == 2 and "no --config given" in result.stderr


@pytest.mark.real
def test_the_demo_config_listens_on_loopback_only(tmp_path: Path) -> None:
    env = {**_isolated(tmp_path), "MIDBRAIN_HUB__HTTP_HOST": "0.0.0.0"}
    result = _midbrain("hub", "--config", str(DEMO_CONFIG), env=env, timeout=30)
    assert result.returncode == 2 and "hub.http_host = '0.0.0.0'" in result.stderr


@pytest.mark.real
def test_config_check_refuses_a_copy_of_the_demo_and_accepts_the_demo(tmp_path: Path) -> None:
    copy = _demo_copy(tmp_path)
    refused = _midbrain("config", "check", str(copy))
    assert refused.returncode == 2 and f"config error: {copy}: city.operator_token is the demo's" in refused.stderr
    assert _midbrain("config", "check", str(DEMO_CONFIG)).returncode == 0


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 40) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy within {timeout}s")


@pytest.mark.real
def test_config_new_writes_fresh_secrets_that_check_and_run_a_hub(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    out = tmp_path / "etc"
    made = _midbrain("config", "new", "--community", "xihu-lc", "--name", "留下社区", "--out", str(out))
    assert made.returncode == 0, made.stderr
    community, city = out / "community.toml", out / "city.toml"
    assert str(community) in made.stdout and str(city) in made.stdout
    for path in (community, city):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        check = _midbrain("config", "check", str(path))
        assert check.returncode == 0 and "community xihu-lc" in check.stdout, check.stderr
    c, k = load_config(community), load_config(city)
    assert not k.bridge.community_key.get_secret_value() and not c.city.signing_key.get_secret_value()
    assert not c.city.operator_token.get_secret_value()  # the city's secrets are in its own file only
    assert k.city.community_keys["xihu-lc"].get_secret_value() == c.bridge.community_key.get_secret_value()
    from contract.downlink import public_key_of

    assert public_key_of(k.city.signing_key.get_secret_value()) == c.hub.city_public_key == c.bridge.city_public_key
    for cfg in (c, k):
        for section in ("hub", "bridge", "city"):
            for name, value in secret_settings(getattr(cfg, section), section + "."):
                assert hashlib.sha256(value.encode()).hexdigest() not in SHIPPED_SHA256, name
    again = _midbrain("config", "new", "--community", "xihu-lc", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    assert load_config(community).bridge.community_key == c.bridge.community_key  # nothing overwritten

    port = free_port()
    env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(mosquitto.port), "MIDBRAIN_HUB__HTTP_PORT": str(port),
           "MIDBRAIN_HUB__DATABASE": str(tmp_path / "hub.sqlite3")}
    hub = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "hub", "--config", str(community),
                            "--log-level", "WARNING"], cwd=REPO, env=env, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", hub)
    finally:
        hub.send_signal(signal.SIGTERM)
        _, err = hub.communicate(timeout=30)
    assert hub.returncode == 0, err
