"""How every tier reaches an MQTT broker (shared so that all tiers read it alike).

TLS: ``tls = true`` encrypts the link and verifies the broker's certificate and host name
(always; there is no switch to turn verification off) against ``ca_file``, or the
system's trust store without one. ``client_cert`` with ``client_key`` is presented to a
broker that requires client certificates. ``username`` and ``password`` authenticate the
client on any link. A half-configured endpoint (a certificate without its key, a CA file
or certificate without ``tls``, a password without a username, a password sent to
another machine without TLS) is a config error.
"""

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, FilePath, model_validator


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: a link that cannot leave the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MqttEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: FilePath | None = None  # the CA the broker's certificate must chain to (default: system store)
    client_cert: FilePath | None = None  # PEM; with client_key
    client_key: FilePath | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_initial_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "MqttEndpoint":
        if (self.client_cert is None) != (self.client_key is None):
            have, missing = ("client_cert", "client_key") if self.client_key is None else ("client_key", "client_cert")
            raise ValueError(f"TLS half-configured: {have} is set but {missing} is not (they go together)")
        if not self.tls:
            stray = [k for k in ("ca_file", "client_cert", "client_key") if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)} set but tls is false: set tls = true "
                                 "(and the broker's TLS port, 8883 in config/mosquitto/mosquitto.conf)")
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if self.password is not None and not self.tls and not is_loopback(self.host):
            raise ValueError(f"the password would cross the network to {self.host} in clear: set tls = true "
                             "(the broker's TLS port, 8883 in config/mosquitto/mosquitto.conf)")
        return self
