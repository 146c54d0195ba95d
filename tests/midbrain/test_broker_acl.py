"""`midbrain config acl FILE`: the Mosquitto ACL with the community written in."""

import subprocess
import sys

import pytest

from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.integration


def test_the_acl_command_names_the_community_every_gateway_and_every_mqtt_device(tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other.toml"
    other.write_text(DEMO_CONFIG.read_text().replace('id = "xihu-demo"', 'id = "other-town"'))
    out = subprocess.run([sys.executable, "-m", "midbrain.cli", "config", "acl", str(other)],
                         capture_output=True, text=True, check=True).stdout
    assert "%u" not in out and "pattern" not in out and "mb/v1/+" not in out  # no community wildcards
    assert "user gw-b1\ntopic write mb/v1/other-town/gw-b1/state\n" in out
    assert "topic write field/gw-b1/b1-th-01" in out and "xihu-demo" not in out


def test_a_broken_config_is_refused_with_the_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO_CONFIG.read_text().replace('id = "xihu-demo"', 'id = "Bad Id!"'))
    run = subprocess.run([sys.executable, "-m", "midbrain.cli", "config", "acl", str(bad)], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "community.id" in run.stderr and run.stdout == ""


def test_an_id_that_is_two_broker_users_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clash = tmp_path / "clash.toml"
    clash.write_text(DEMO_CONFIG.read_text().replace('id = "b1-th-01"', 'id = "gw-b2"'))
    run = subprocess.run([sys.executable, "-m", "midbrain.cli", "config", "acl", str(clash)], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "also another broker user: gw-b2" in run.stderr and run.stdout == ""
