import subprocess
import sys
from pathlib import Path

import pytest

from midbrain.config import ConfigError, load_config
from tests.conftest import DEMO_CONFIG


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO_CONFIG.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.unit
def test_the_shipped_demo_community() -> None:
    cfg = load_config(DEMO_CONFIG)
    c = cfg.community
    assert len(c.buildings) == 2
    assert 18 <= len(c.devices) <= 24
    classes = {d.device_class for d in c.devices}
    assert len(classes) >= 6
    assert sum(d.device_class == "kiosk" for d in c.devices) == 1
    assert any(d.serial is not None for d in c.devices)


@pytest.mark.unit
@pytest.mark.parametrize(("old", "new", "expected"), [
    ("http_port = 8300", 'http_port = "abc"', "hub.http_port: Input should be a valid integer"),
    ("http_port = 8300", "http_port = 8300\nhttp_prot = 1", "hub.http_prot: unknown key (known keys here: "),
    ('building = "b2"', 'building = "b9"', "gateway 'gw-b2' names unknown building 'b9'"),
    ('class = "smoke"', 'class = "toaster"', "community.devices.3.class: Input should be"),
    ('id = "xihu-demo"', 'id = "Xihu Demo"', "community.id: String should match pattern"),
    ("alert_threshold = 0.8", "alert_threshold = 2", "hub.alert_threshold: Input should be less than 1"),
    ("[mqtt]", "[mqtt\n", "TOML syntax error"),
])
def test_errors_name_file_key_and_reason(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert expected in text


@pytest.mark.unit
def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_HUB__HTTP_PORT", "9123")
    monkeypatch.setenv("MIDBRAIN_MQTT__PORT", "2883")
    cfg = load_config(DEMO_CONFIG)
    assert (cfg.hub.http_port, cfg.mqtt.port) == (9123, 2883)


@pytest.mark.unit
def test_a_bad_environment_override_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_HUB__HTTP_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="hub.http_port"):
        load_config(DEMO_CONFIG)


@pytest.mark.real
@pytest.mark.parametrize("command", [["config", "check"], ["hub", "--config"], ["demo", "--config"]])
def test_the_cli_exits_non_zero_before_starting_anything(tmp_path: Path, command: list[str]) -> None:
    path = _variant(tmp_path, "http_port = 8300", 'http_port = "abc"')
    result = subprocess.run([sys.executable, "-m", "midbrain.cli", *command, str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"config error: {path}: hub.http_port: Input should be a valid integer" in result.stderr


@pytest.mark.real
def test_config_check_accepts_the_demo() -> None:
    result = subprocess.run([sys.executable, "-m", "midbrain.cli", "config", "check", str(DEMO_CONFIG)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "20 devices" in result.stdout
