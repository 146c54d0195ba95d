"""Half-configured TLS and credentials are refused before anything starts, with the key and the reason."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("env", "message"), [
    ({"MIDBRAIN_MQTT__TLS": "true", "MIDBRAIN_MQTT__CLIENT_CERT": "{cert}"},
     "mqtt: Value error, TLS half-configured: client_cert is set but client_key is not"),
    ({"MIDBRAIN_MQTT__CA_FILE": "{cert}"}, "mqtt: Value error, ca_file set but tls is false"),
    ({"MIDBRAIN_MQTT__HOST": "10.0.0.2", "MIDBRAIN_MQTT__USERNAME": "gw-b1", "MIDBRAIN_MQTT__PASSWORD": "x"},
     "the password would cross the network to 10.0.0.2 in clear"),
    ({"MIDBRAIN_BRIDGE__CITY_URL": "http://city.example"}, "city_url 'http://city.example' would leave this machine"),
    ({"MIDBRAIN_BRIDGE__CLIENT_KEY": "{cert}"}, "bridge: Value error, TLS half-configured: client_key is set"),
])
def test_config_check_refuses_half_configured_tls(tmp_path: Path, env: dict[str, str], message: str) -> None:
    cert = tmp_path / "c.crt"
    cert.write_text("-")
    run = subprocess.run([sys.executable, "-m", "midbrain.cli", "config", "check", str(DEMO_CONFIG)],
                         env={**os.environ, **{k: v.format(cert=cert) for k, v in env.items()}},
                         capture_output=True, text=True)
    assert run.returncode == 2 and message in run.stderr, run.stderr
