import os
import subprocess
import sys
from pathlib import Path

import pytest

from midbrain.config import ConfigError, MidbrainConfig, load_config
from midbrain.configfile import SECTIONS
from midbrain.edge_config import EdgeConfig, load_edge_config
from tests.conftest import DEMO_CONFIG, REPO


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
    if not name.startswith("MIDBRAIN_HUB__"):  # the hub's section is the hub's to check, not the edge's
        with pytest.raises(ConfigError) as edge_err:  # the edge agent's reading says the same
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
@pytest.mark.parametrize("root", [MidbrainConfig, EdgeConfig])
def test_every_reading_of_the_file_knows_every_section(root: type) -> None:
    assert set(SECTIONS) == set(root.model_fields)


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
    with pytest.raises(ConfigError) as edge:
        load_edge_config(path)
    with pytest.raises(ConfigError) as full:
        load_config(path)
    assert str(edge.value).startswith(f"{path}: ") and expected in str(edge.value)
    assert str(edge.value) == str(full.value)


@pytest.mark.unit
@pytest.mark.usefixtures("no_overrides")
def test_the_edge_leaves_the_other_services_sections_to_them(tmp_path: Path) -> None:
    path = _variant(tmp_path, "http_port = 8300", 'http_port = "abc"')
    with pytest.raises(ConfigError):
        load_config(path)
    assert load_edge_config(path).hub["http_port"] == "abc"


@pytest.mark.unit
def test_the_edge_loader_applies_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIDBRAIN_MQTT__PORT", "2883")
    monkeypatch.setenv("MIDBRAIN_EDGE__SPOOL_MAX_MB", "64")
    cfg = load_edge_config(DEMO_CONFIG)
    assert (cfg.mqtt.port, cfg.edge.spool_max_mb) == (2883, 64)


@pytest.mark.real
@pytest.mark.parametrize("module", ["midbrain", "midbrain.cli"])
def test_midbrain_edge_reports_a_bad_config(tmp_path: Path, module: str) -> None:
    path = _variant(tmp_path, 'device_topic_prefix = "field"', "device_topic_prefix = 7")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
    result = subprocess.run([sys.executable, "-m", module, "edge", "--gateway", "gw-b1", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert f"config error: {path}: edge.device_topic_prefix: Input should be a valid string" in result.stderr


@pytest.mark.real
@pytest.mark.parametrize(("args", "name", "value", "expected"), [
    (["edge", "-g", "gw-b1"], "MIDBRAIN_EDGE__SPOOL_MAX_MB", "lots",
     "config error: MIDBRAIN_EDGE__SPOOL_MAX_MB (environment): edge.spool_max_mb: Input should be a valid integer"),
    (["edge", "-g", "gw-b1"], "MIDBRAIN_MQTT__HOTS", "broker",
     "config error: MIDBRAIN_MQTT__HOTS (environment): mqtt.hots: unknown key; did you mean host?"),
    (["hub"], "MIDBRAIN_MQTT__HOTS", "broker",
     "config error: MIDBRAIN_MQTT__HOTS (environment): mqtt.hots: unknown key; did you mean host?"),
    (["edge", "-g", "nope"], "MIDBRAIN_MQTT__PORT", "2883",
     "config error: config/demo.toml: community.gateways: no gateway 'nope' (known: gw-b1, gw-b2, gw-kiosk)"),
])
def test_midbrain_edge_reads_the_environment_as_every_service_does(
        args: list[str], name: str, value: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")} | {name: value}
    result = subprocess.run([sys.executable, "-m", "midbrain", *args, "--config", "config/demo.toml"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(expected), result.stderr


@pytest.mark.real
@pytest.mark.parametrize("option", [["--serial-port", "b1-aq-01"], ["--log-level", "loud"]])
def test_midbrain_edge_refuses_a_bad_option(option: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "midbrain", "edge", "-g", "gw-b1", *option],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert option[1] in result.stderr


@pytest.mark.real
def test_midbrain_edge_loads_none_of_the_other_services_settings() -> None:
    """A gateway's budget is 40 MB (docs/edge.md): the hub's settings alone pull in its accounts and sqlite3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
    probe = ("import sys; from midbrain.entry import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'pydantic_settings', 'hub', "
             "'cloud_bridge', 'simulators', 'sqlite3'}))")
    loaded = subprocess.run([sys.executable, "-c", probe, "edge", "--gateway", "nope", "--config", str(DEMO_CONFIG)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert "no gateway 'nope'" in loaded.stderr
    assert loaded.stdout.strip() == "['pydantic_settings', 'typer']"  # the one CLI and the one loader, no more
