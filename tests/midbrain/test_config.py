import os
import subprocess
import sys
from pathlib import Path

import pytest

from midbrain.config import ConfigError, MidbrainConfig, load_config
from midbrain.configfile import SECTIONS, load_edge_config
from tests.conftest import DEMO_CONFIG


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO_CONFIG.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MIDBRAIN_"):
            monkeypatch.delenv(name)


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
    ("http_port = 8300", "http_port = 8300\nhttp_prot = 1",
     "hub.http_prot: unknown key; did you mean http_port? (known keys here: "),
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
@pytest.mark.usefixtures("no_overrides")
def test_a_bad_environment_override_is_blamed_on_the_variable_not_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_HUB__HTTP_PORT", "not-a-port")
    with pytest.raises(ConfigError) as err:
        load_config(DEMO_CONFIG)
    assert str(err.value) == ("MIDBRAIN_HUB__HTTP_PORT (environment): hub.http_port: Input should be a valid "
                              "integer, unable to parse string as an integer (got 'not-a-port')")


@pytest.mark.unit
@pytest.mark.usefixtures("no_overrides")
@pytest.mark.parametrize(("name", "expected"), [
    ("MIDBRAIN_HUB__HTTP_PROT", "MIDBRAIN_HUB__HTTP_PROT (environment): hub.http_prot: unknown key; "
                                "did you mean http_port? (known keys here: "),
    ("MIDBRAIN_MQTT__HOTS", "MIDBRAIN_MQTT__HOTS (environment): mqtt.hots: unknown key; did you mean host?"),
    ("MIDBRAIN_HUBB__HTTP_PORT", "MIDBRAIN_HUBB__HTTP_PORT (environment): hubb: unknown key; did you mean hub?"),
])
def test_an_environment_variable_that_names_no_key_is_an_error(
        monkeypatch: pytest.MonkeyPatch, name: str, expected: str) -> None:
    """pydantic-settings ignores such a variable: the operator would never learn of the typo."""
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as err:
        load_config(DEMO_CONFIG)
    assert str(err.value).startswith(expected)
    with pytest.raises(ConfigError) as edge_err:  # the edge's light loader says the same
        load_edge_config(DEMO_CONFIG)
    assert str(edge_err.value) == str(err.value)


@pytest.mark.unit
@pytest.mark.usefixtures("no_overrides")
def test_other_midbrain_variables_are_not_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_CHAOS_S", "600")  # the tests' and CI's own settings
    monkeypatch.setenv("MIDBRAIN_CI_PHASES", "apt=1s")
    assert load_config(DEMO_CONFIG).hub.http_port == 8300


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


@pytest.mark.unit
def test_the_light_loader_knows_every_section() -> None:
    assert set(SECTIONS) == set(MidbrainConfig.model_fields)


@pytest.mark.unit
@pytest.mark.usefixtures("no_overrides")
def test_the_edge_reads_its_sections_as_the_whole_loader_does() -> None:
    light, full = load_edge_config(DEMO_CONFIG), load_config(DEMO_CONFIG)
    assert (light.community, light.mqtt, light.edge) == (full.community, full.mqtt, full.edge)


@pytest.mark.unit
@pytest.mark.usefixtures("no_overrides")
@pytest.mark.parametrize(("old", "new", "expected"), [
    ('device_topic_prefix = "field"', "device_topic_prefx = 1",
     "edge.device_topic_prefx: unknown key; did you mean device_topic_prefix? (known keys"),
    ("port = 1883", 'port = "x"', "mqtt.port: Input should be a valid integer"),
    ('building = "b2"', 'building = "b9"', "gateway 'gw-b2' names unknown building 'b9'"),
    ("[city]", "[cty]", "cty: unknown key; did you mean city? (known keys here: bridge, city, community"),
    ("[mqtt]", "[mqtt\n", "TOML syntax error"),
])
def test_the_edge_loader_reports_errors_in_its_sections_as_the_whole_loader_does(
        tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as light:
        load_edge_config(path)
    with pytest.raises(ConfigError) as full:
        load_config(path)
    assert str(light.value).startswith(f"{path}: ") and expected in str(light.value)
    if "cty" not in new:  # the whole loader words an unknown section its own way
        assert str(light.value) == str(full.value)


@pytest.mark.unit
def test_the_edge_loader_applies_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_MQTT__PORT", "2883")
    monkeypatch.setenv("MIDBRAIN_EDGE__SPOOL_MAX_MB", "64")
    cfg = load_edge_config(DEMO_CONFIG)
    assert (cfg.mqtt.port, cfg.edge.spool_max_mb) == (2883, 64)


@pytest.mark.real
@pytest.mark.parametrize("module", ["midbrain", "midbrain.cli"])
def test_midbrain_edge_reports_a_bad_config_and_stays_light(tmp_path: Path, module: str) -> None:
    path = _variant(tmp_path, 'device_topic_prefix = "field"', "device_topic_prefix = 7")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
    result = subprocess.run([sys.executable, "-m", module, "edge", "--gateway", "gw-b1", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert f"config error: {path}: edge.device_topic_prefix: Input should be a valid string" in result.stderr
    probe = ("import sys; from midbrain.entry import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'pydantic_settings', "
             "'hub', 'cloud_bridge', 'simulators')))")
    loaded = subprocess.run([sys.executable, "-c", probe, "edge", "--gateway", "nope", "--config", str(DEMO_CONFIG)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert "no gateway 'nope'" in loaded.stderr and loaded.stdout.strip() == "[]"
