"""The DNS server: one UDP socket and one TCP listener on the same address and port.

`serve` runs until cancelled, so it fits a TaskGroup; it sets `ready` once both sockets are
bound and answering. `listening` is the same as a context manager, for a caller that wants the
port the system chose (`port=0`: one free for both UDP and TCP).

Answers are computed in the event loop from the source's caches: a question costs no I/O, so a
datagram is answered within its callback and needs no task of its own. A TCP connection may ask
many questions (RFC 7766); it is closed after `IDLE_TIMEOUT` of silence, on bytes that are no
query, and when the server stops. At most `MAX_CONNECTIONS` are open at once; more are closed
at once, and their clients fall back to UDP or retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import cast

import dns.name

from nodeagent.dns.names import DEFAULT_DOMAIN, zone_of
from nodeagent.dns.responding import Transport, respond
from nodeagent.dns.source import Source

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
PORT_ATTEMPTS = 20


async def serve(
    source: Source,
    address: str,
    port: int,
    *,
    domain: str = DEFAULT_DOMAIN,
    ready: asyncio.Event | None = None,
) -> None:
    """Answer cluster DNS on `address`:`port` (UDP and TCP) until cancelled."""
    async with listening(source, address, port, domain=domain) as bound:
        log.info("cluster DNS for %s on %s port %d (UDP and TCP)", domain, address, bound)
        if ready is not None:
            ready.set()
        await asyncio.Future()  # until cancelled


@contextlib.asynccontextmanager
async def listening(
    source: Source, address: str, port: int, *, domain: str = DEFAULT_DOMAIN
) -> AsyncIterator[int]:
    """Answer while inside; the port bound. OSError if the address or port cannot be bound."""
    server = _Server(source, zone_of(domain))
    udp, tcp = _bind(address, port)
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(server), sock=udp)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    try:
        listener = await asyncio.start_server(server.connection, sock=tcp)
    except BaseException:
        transport.close()
        tcp.close()
        raise
    try:
        yield tcp.getsockname()[1]
    finally:
        transport.close()
        listener.close()
        await server.close_connections()
        await listener.wait_closed()


def _bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port (with `port=0`, one free for both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for attempt in range(1 if port else PORT_ATTEMPTS):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((address, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError:
            udp.close()
            tcp.close()
            if port or attempt == PORT_ATTEMPTS - 1:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    raise AssertionError("unreachable")


class _Server:
    def __init__(self, source: Source, zone: dns.name.Name) -> None:
        self.source = source
        self.zone = zone
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def respond(self, wire: bytes, transport: Transport) -> bytes | None:
        try:
            return respond(wire, self.source, zone=self.zone, transport=transport)
        except Exception:  # nothing a client sends may stop the server
            log.exception("cannot respond to a DNS message over %s", transport)
            return None

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._connections[task] = writer
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    wire = await reader.readexactly(size)
                reply = self.respond(wire, "tcp")
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client left, went silent or broke the connection (or the server stops)
        finally:
            del self._connections[task]
            writer.close()

    async def close_connections(self) -> None:
        """Close every open connection, and wait for their handlers to see it and end (they are
        not cancelled: the stream machinery logs a cancelled handler as an error)."""
        tasks = list(self._connections)
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.server.respond(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS over UDP: %s", exc)  # an ICMP error about an earlier reply: nothing to do
