"""A request whose connection is lost while it waits for its reply fails at once (Unavailable),
instead of waiting out its timeout: the reply went into a dead link or will come back over one,
and the caller's retry over the new connection must not wait for nothing. (A node agent whose
link comes back renews its Lease and lists its pods at once, not a request timeout later.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import kinds, natsserver, subjects
from bus.client import Client
from bus.connection import connect, link
from bus.errors import Timeout, Unavailable
from tests.faults import Relay

SLOW = 20.0  # the client's timeout: far longer than a lost connection may take to fail it


@pytest.fixture
def server(tmp_path: Path) -> Iterator[natsserver.NatsServer]:
    """A server of this test's own, where no API answers: requests wait for the test's replier."""
    own = natsserver.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    yield own
    own.stop()


async def test_a_request_in_flight_fails_at_once_when_its_connection_is_lost(
    server: natsserver.NatsServer,
) -> None:
    async with Relay(server.url) as relay:
        nc = await connect(relay.url, name="test-lost")
        # Nobody answers in time: the request is in flight until its connection goes.
        silent = await connect(server.url, name="test-silent")
        heard = asyncio.Event()

        async def hold(_msg: object) -> None:
            heard.set()

        # One round trip, as it fails (the client would send a list again: see test_client_retries).
        client = Client(nc, timeout=SLOW, node="lost-node", retry_within=0)
        info = kinds.BY_KIND["Pod"]
        await silent.subscribe(subjects.node("lost-node", "list", info.plural, "default"), cb=hold)
        await silent.flush()
        try:
            waiting = asyncio.ensure_future(client.request("list", info, "default", b"{}"))
            await heard.wait()
            await relay.cut_for(0.2)
            with pytest.raises(Unavailable, match="lost"):
                async with asyncio.timeout(SLOW / 2):
                    await waiting
            # Over the new connection, requests are answered (or time out) as before.
            await link(nc).connected.wait()
            client.timeout = 0.5
            with pytest.raises(Timeout):
                await client.request("list", info, "default", b"{}")
        finally:
            await nc.close()
            await silent.close()
