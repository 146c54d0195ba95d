"""The embedded amqtt broker, with two corrections to amqtt 0.12 for our use.

1. On every client connect, amqtt 0.12 replays retained messages for *every*
   subscription held by any client (``for topic in self._subscriptions`` in
   ``Broker.client_connected``), so a client receives retained messages it never
   subscribed to. :class:`_Broker` replays only for the connecting session's own filters.
2. amqtt marks sessions admitted by ``AnonymousAuthPlugin`` as anonymous and then does
   not queue QoS 1 messages for them while they are disconnected, even with
   ``clean_session=False``. The demo's hub and bridge rely on that queueing (MQTT 3.1.1
   §3.1.2.4), so loopback clients are admitted by :class:`LoopbackAuthPlugin`, which does
   not mark them anonymous.

Mosquitto has neither problem and is what production uses.
"""

import asyncio
import logging
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = logging.getLogger(__name__)


class LoopbackAuthPlugin(BaseAuthPlugin):
    """Admit every client of a loopback-only listener as a non-anonymous session."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


class _Broker(Broker):
    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        holders = self._subscriptions.get(subscription[0], [])
        if not any(s.client_id == session.client_id for s, _ in holders):
            return  # not this session's filter: amqtt 0.12 asks for every filter on connect
        await super()._publish_retained_messages_for_subscription(subscription, session)


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
    }


async def run_embedded_broker(host: str, port: int, stop: asyncio.Event) -> None:
    """amqtt on ``host:port`` until ``stop``. Loopback only: it authenticates no one."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"the embedded broker admits every client and binds to loopback only, not {host!r}")
    broker = _Broker(broker_config(host, port))
    await broker.start()
    log.info("embedded amqtt broker on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
