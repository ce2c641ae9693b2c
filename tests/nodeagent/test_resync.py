"""The agent's retries: a listing that fails is tried again soon, with back-off, not only after
the full re-sync interval (a proxy whose first listing failed served nothing for 30 s); a
start-up step waits out an API that fails for now; a connection closed for good ends the agent."""

from __future__ import annotations

import asyncio

from bus.errors import Internal, Timeout, Unavailable
from nodeagent.agent import _until_done
from nodeagent.resync import resync_loop
from nodeagent.runtime import RuntimeFailure


async def test_a_failed_listing_is_tried_again_before_the_interval() -> None:
    calls = 0
    third = asyncio.Event()

    async def listing() -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            third.set()
            return
        raise Unavailable("the API does not answer yet")

    now = asyncio.Event()
    now.set()  # list at once, as at start
    loop = asyncio.create_task(resync_loop(listing, 3600.0, now, "listing"))
    try:
        async with asyncio.timeout(10):  # an hour's interval: only a retry gets here
            await third.wait()
    finally:
        loop.cancel()
    assert calls == 3


async def test_a_start_up_step_waits_out_an_api_that_fails_for_now() -> None:
    """Unavailable, Timeout and Internal (a server failing for now) are waited out, and so is a
    container runtime that does not answer yet (an engine restarting); the step is done once
    they answer."""
    failures: list[Exception] = [
        Unavailable("no API server"),
        Internal("the store failed"),
        Timeout("too slow"),
        RuntimeFailure("the Docker engine does not answer"),
    ]

    async def step() -> None:
        if failures:
            raise failures.pop(0)

    async with asyncio.timeout(10):
        await _until_done(step, "list this node's pods")
    assert failures == []
