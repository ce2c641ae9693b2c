"""Plain TCP servers and clients on loopback, for testing the service proxy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from nodeagent.proxy.routes import Backend

HOST = "127.0.0.1"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def naming(name: str) -> Handler:
    """A backend like the test httpd: answers one line with its name, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(name.encode())
        await writer.drain()
        await closed(writer)

    return handle


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echoes until the client half-closes, then closes."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def backends(*handlers: Handler, host: str = HOST) -> AsyncIterator[list[Backend]]:
    """Servers on `host`, one per handler; their connections are closed at the end."""
    accepted: set[asyncio.StreamWriter] = set()

    def tracked(handler: Handler) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.add(writer)
            with contextlib.suppress(ConnectionError):
                await handler(reader, writer)

        return handle

    servers = [await asyncio.start_server(tracked(h), host, 0) for h in handlers]
    try:
        yield [
            Backend(host, s.sockets[0].getsockname()[1], pod=f"pod-{i}", pod_uid=f"uid-{i}")
            for i, s in enumerate(servers)
        ]
    finally:
        for server in servers:
            server.close()
        for writer in accepted:
            await closed(writer)
        for server in servers:
            await server.wait_closed()


async def closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def ask(port: int, host: str = HOST) -> str:
    """One request: a line out, everything up to EOF back."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /\n")
    await writer.drain()
    try:
        return (await reader.read()).decode()
    finally:
        await closed(writer)


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
