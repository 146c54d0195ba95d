import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.accounts import Role
from hub.api import create_app
from hub.service import HubService
from hub.settings import HubSettings
from servicekit.http import HttpServer


@asynccontextmanager
async def serving_hub(tmp_path: Path, community: Community, mqtt: MqttEndpoint,
                      **settings: object) -> AsyncIterator[tuple[str, HubService]]:
    """The hub's real app on a free port; yields (base URL, service)."""
    hub_settings = HubSettings(database=tmp_path / "hub.sqlite3", http_port=0,
                               **{"write_interval_s": 0.05, "stride_s": 0.5, **settings})  # type: ignore[arg-type]
    ready = asyncio.Event()
    server = HttpServer(create_app(hub_settings, community, mqtt, ready=ready), "127.0.0.1", 0)
    task = asyncio.create_task(server.serve(), name="test-hub-http")
    await asyncio.wait_for(ready.wait(), 20)
    await server.started()
    hub: HubService = server._server.config.app.state.hub  # the app owns it (lifespan)
    await hub.wait_ready()
    try:
        yield server.url, hub
    finally:
        server.stop()
        await asyncio.wait_for(task, 30)


def api_token(hub: HubService, role: Role = "staff", name: str = "tests") -> dict[str, str]:
    """Request headers with a new API token of ``role``, made through the hub's accounts as an
    admin makes one (every read of the hub's API needs a login or a token)."""
    assert hub.accounts is not None
    token = hub.accounts.create_token(f"{name}-{role}", role, actor="tests")
    return {"Authorization": f"Bearer {token}"}
