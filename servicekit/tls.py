"""Client-side TLS contexts, built in one place for every link that can leave the machine
(MQTT in servicekit/mqtt.py, the bridge's HTTPS in cloud_bridge/delivery.py).

The context always verifies the peer's certificate chain and host name
(``ssl.create_default_context``); only what it trusts and what it presents vary.
"""

import ssl
from pathlib import Path

from contract.endpoints import MqttEndpoint

__all__ = ["client_context", "mqtt_context"]


def client_context(ca_file: Path | None = None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: trust ``ca_file`` (else the system store), present ``cert``/``key`` if given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


def mqtt_context(endpoint: MqttEndpoint) -> ssl.SSLContext | None:
    """The TLS context for ``endpoint``, or None for a plain link."""
    if not endpoint.tls:
        return None
    return client_context(endpoint.ca_file, endpoint.client_cert, endpoint.client_key)
