"""The agent's listing loop: a listing that fails is tried again soon, with back-off, not only
after the full re-sync interval (a proxy whose first listing failed served nothing for 30 s)."""

from __future__ import annotations

import asyncio

from bus.errors import Unavailable
from nodeagent.resync import resync_loop


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
