"""HttpServer's listening socket: connections accepted on it get TCP_NODELAY."""

import asyncio
import socket

import pytest

from servicekit.http import HttpServer

pytestmark = pytest.mark.real


async def test_connections_accepted_on_the_servers_socket_do_not_wait_for_delayed_acks() -> None:
    """asyncio turns Nagle off only on sockets that say they are TCP. Ours did not (proto
    0), and a response written in two parts waited about 40 ms for the client's delayed
    ACK. Checked here on a connection accepted through asyncio on the very socket
    HttpServer serves from."""
    server = HttpServer(object(), "127.0.0.1", 0)
    accepted: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop().create_future()

    class Capture(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    listener = await asyncio.get_running_loop().create_server(Capture, sock=server._sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        transport = await asyncio.wait_for(accepted, 5)
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        writer.close()
    finally:
        listener.close()
        await listener.wait_closed()
