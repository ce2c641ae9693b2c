"""Connections against a real nats-server that goes away: reconnect forever, wait at start, fail fast
in the CLI, and never stay alive but deaf once nats-py has closed a connection for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from bus import natsserver
from bus.backoff import Backoff
from bus.connection import announce, close, connect, discover, fail_when_closed, link
from bus.errors import Unavailable
from tests.faults import ERR_MAX_CONTROL_LINE, Relay, free_port, outage


@pytest.fixture
def server(tmp_path: Path) -> Iterator[natsserver.NatsServer]:
    """A server of this test's own: restarting it disturbs no other test."""
    own = natsserver.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    yield own
    own.stop()


@pytest.mark.parametrize(
    ("first", "cap", "attempts", "low", "high"),
    [
        (0.05, 1.0, 0, 0.025, 0.05),
        (0.05, 1.0, 1, 0.05, 0.1),
        (0.05, 1.0, 4, 0.4, 0.8),
        (0.05, 1.0, 5, 0.5, 1.0),
        (0.05, 1.0, 1000, 0.5, 1.0),  # an outage of any length: never more than the cap
    ],
)
def test_backoff_doubles_with_jitter_up_to_its_cap(
    first: float, cap: float, attempts: int, low: float, high: float
) -> None:
    backoff = Backoff(first=first, cap=cap)
    backoff.attempts = attempts
    delays = []
    for _ in range(50):
        backoff.attempts = attempts
        delays.append(backoff.next())
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1  # jittered
    backoff.reset()
    assert backoff.ceiling() == first


@pytest.mark.parametrize(("down_for", "how"), [(0.2, "kill"), (3.0, "kill"), (3.0, "stop"), (8.0, "kill")])
async def test_a_connection_outlives_an_outage_of_any_length(
    server: natsserver.NatsServer, down_for: float, how: str
) -> None:
    nc = await connect(server.url, name="test-outage")
    state = link(nc)
    try:
        await outage(server, down_for, how=how)  # type: ignore[arg-type]
        async with asyncio.timeout(30):
            while state.generation == 0:
                await state.connected.wait()
                await asyncio.sleep(0)
        assert not state.closed.is_set()
        await nc.jetstream().account_info()  # it serves: JetStream answers through it
    finally:
        await close(nc)


async def test_the_cli_fails_fast_with_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(Unavailable) as failed:
        await connect(f"nats://127.0.0.1:{port}", name="test-cli")
    assert failed.value.message.startswith(f"cannot connect to NATS at nats://127.0.0.1:{port}: ")
    assert "\n" not in failed.value.message


async def test_a_service_waits_for_its_server_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Until the server starts, something on its port turns every attempt away (as a server that
    # is starting would), and counts them.
    attempts = 0
    several = asyncio.Event()

    def turn_away(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        if attempts >= 4:
            several.set()
        writer.transport.abort()

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    caplog.set_level(logging.INFO, logger="bus.connection")
    doorman = await asyncio.start_server(turn_away, "127.0.0.1", port)
    connecting = asyncio.create_task(connect(url, name="test-service", wait=True))
    server = None
    try:
        await asyncio.wait_for(several.wait(), 30)
        doorman.close()
        await doorman.wait_closed()
        server = await asyncio.to_thread(natsserver.start, tmp_path / "nats", port=port)
        nc = await asyncio.wait_for(connecting, 30)
        await close(nc)
    finally:
        connecting.cancel()
        doorman.close()
        if server is not None:
            server.stop()
    waiting = [r for r in caplog.records if "waiting for it" in r.getMessage()]
    assert len(waiting) == 1 and url in waiting[0].getMessage()
    assert any(r.getMessage() == f"connected to NATS at {url}" for r in caplog.records)


async def test_a_connection_closed_for_good_fails_the_service(server: natsserver.NatsServer) -> None:
    async with Relay(server.url) as relay:
        nc = await connect(relay.url, name="test-closed")
        watching = asyncio.create_task(fail_when_closed(nc))
        await relay.send(ERR_MAX_CONTROL_LINE)
        with pytest.raises(Unavailable, match="(?i)closed for good .*maximum control line exceeded"):
            await asyncio.wait_for(watching, 30)
        assert link(nc).closed.is_set()


async def test_closing_on_purpose_is_no_failure(server: natsserver.NatsServer) -> None:
    nc = await connect(server.url, name="test-close")
    watching = asyncio.create_task(fail_when_closed(nc))
    await close(nc)
    await asyncio.wait_for(watching, 10)  # returns, raises nothing


async def test_closing_while_reconnecting_with_unsent_messages_does_not_raise(
    server: natsserver.NatsServer,
) -> None:
    async with Relay(server.url) as relay:
        nc = await connect(relay.url, name="test-close-reconnecting")
        gone = asyncio.Event()
        link(nc).on_disconnect(gone.set)
        async with relay.cut():
            await asyncio.wait_for(gone.wait(), 30)
            for _ in range(100):
                await nc.publish("test.unsent", b"x" * 1000)  # buffered: there is no server
            await close(nc)
        assert link(nc).closed.is_set()


async def test_a_flush_cancelled_before_its_pong_leaves_the_connection_reading(
    server: natsserver.NatsServer,
) -> None:
    """The PONG of a flush nobody waits for any more must not end the read loop (a stopped
    task, a cancelled reconnect): the connection goes on receiving at once."""
    nc = await connect(server.url, name="test-flush")
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(msg.data)

        echo = await nc.subscribe("echo", cb=answer)
        flushing = asyncio.create_task(nc.flush())
        await asyncio.sleep(0)  # its PING is on its way
        flushing.cancel()
        for i in range(3):
            reply = await nc.request("echo", str(i).encode(), timeout=3)
            assert reply.data == str(i).encode()
        await echo.unsubscribe()
    finally:
        await close(nc)


async def test_announcing_while_the_link_is_cut_does_not_fail(server: natsserver.NatsServer) -> None:
    """A component whose link is cut as it announces itself carries on, and is discovered once
    the link is back."""
    async with Relay(server.url) as relay:
        nc = await connect(relay.url, name="test-announce")
        try:
            async with relay.cut():
                await announce(nc, "tester", description="a test", metadata={"instance": "cut"})
            async with asyncio.timeout(30):
                while not any(c.metadata.get("instance") == "cut" for c in await discover(nc, wait=0.3)):
                    pass
        finally:
            await close(nc)
