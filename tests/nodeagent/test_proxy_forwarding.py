"""The proxy's listeners against plain asyncio servers on 127.0.0.1: balancing, skipping a backend
that refuses, following backend changes without dropping open connections, and moving bytes
faithfully (large payloads, half-close)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from nodeagent.proxy.balancing import Policy, Pool
from nodeagent.proxy.forwarding import Connections, Listener
from nodeagent.proxy.routes import Backend, PoolKey
from nodeagent.proxy.tally import Tally
from tests.nodeagent.tcp import HOST, ask, backends, closed, closed_port, echo, naming

KEY = PoolKey("ns", "web", "http")


@contextlib.asynccontextmanager
async def listening(
    found: list[Backend], policy: Policy = "round-robin"
) -> AsyncIterator[tuple[Listener, int]]:
    connections = Connections()
    listener = Listener(KEY, Pool(tuple(found), policy=policy), tally=Tally("n1"), connections=connections)
    await listener.start(HOST, 0)
    assert listener.server is not None
    try:
        yield listener, listener.server.sockets[0].getsockname()[1]
    finally:
        listener.stop()
        connections.close_all()


async def test_round_robin_spreads_connections_evenly_and_counts_them() -> None:
    async with backends(naming("a"), naming("b"), naming("c")) as found, listening(found) as (listener, port):
        answers = Counter([await ask(port) for _ in range(30)])
        assert answers == {"a": 10, "b": 10, "c": 10}
        report = listener.tally.take({})
    [service] = report.services
    assert (service.namespace, service.name, service.requests) == ("ns", "web", 30)
    assert {(e.pod_name, e.pod_uid, e.requests) for e in service.endpoints} == {
        ("pod-0", "uid-0", 10),
        ("pod-1", "uid-1", 10),
        ("pod-2", "uid-2", 10),
    }


async def test_a_backend_that_refuses_is_skipped() -> None:
    async with backends(naming("a"), naming("b")) as found:
        dead = Backend(HOST, closed_port(), pod="dead")
        async with listening([found[0], dead, found[1]]) as (listener, port):
            answers = Counter([await ask(port) for _ in range(20)])
            report = listener.tally.take({})
    assert set(answers) == {"a", "b"} and sum(answers.values()) == 20
    assert "dead" not in {e.pod_name for e in report.services[0].endpoints}


async def test_without_a_backend_the_connection_is_closed_unanswered() -> None:
    async with listening([Backend(HOST, closed_port())]) as (_, port):
        with contextlib.suppress(ConnectionResetError):
            assert await ask(port) == ""


async def test_least_connections_prefers_the_idle_backend() -> None:
    async with backends(echo, naming("b")) as found, listening(found, "least-connections") as (_, port):
        # One long connection to the echo backend: round robin would still send it every other one.
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        answers = Counter([await ask(port) for _ in range(5)])
        assert answers == {"b": 5}
        await closed(writer)


async def test_new_backends_take_only_new_connections() -> None:
    async with backends(echo, naming("b")) as found, listening(found[:1]) as (listener, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        listener.pool.update((found[1],))
        assert await ask(port) == "b"
        writer.write(b"two")  # the open connection still reaches its backend
        assert await reader.readexactly(3) == b"two"
        writer.write_eof()
        assert await reader.read() == b""
        await closed(writer)


async def test_a_stopped_listener_refuses_new_connections_and_keeps_open_ones() -> None:
    async with backends(echo) as found, listening(found) as (listener, port):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        listener.stop()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(HOST, port)
        writer.write(b"y")
        assert await reader.readexactly(1) == b"y"
        await closed(writer)


async def test_large_payloads_pass_intact_with_half_close() -> None:
    payload = os.urandom(16 * 1024 * 1024)
    async with backends(echo) as found, listening(found) as (_, port):
        reader, writer = await asyncio.open_connection(HOST, port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sending = asyncio.create_task(send())
        received = await reader.read(-1)
        await sending
        await closed(writer)
    assert received == payload


async def test_shutdown_ends_open_connections() -> None:
    async with backends(echo) as found:
        connections = Connections()
        listener = Listener(KEY, Pool(tuple(found)), tally=Tally("n1"), connections=connections)
        await listener.start(HOST, 0)
        assert listener.server is not None
        port = listener.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        assert len(connections.open) == 1 and listener.pool.active[found[0]] == 1
        listener.stop()
        connections.close_all()
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
        await closed(writer)
