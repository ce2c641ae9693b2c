"""The agent's listings: every so often, and at once when asked (after a reconnect).

The feeds a node agent learns from are core NATS, where a message can be lost; a periodic full
listing is what makes the agent right in the end. A listing that fails (the API not answering
yet, at start or after an outage) is tried again soon, 0.5 s doubling up to 2 s: a proxy whose
first listing failed would otherwise serve nothing for a whole interval, and an agent should
be right again within 2 s of the API's return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bus.errors import SteerError

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5  # seconds before a failed listing is tried again, doubling
RETRY_CAP = 2.0


async def resync_loop(
    resync: Callable[[], Awaitable[None]], interval: float, now: asyncio.Event, what: str
) -> None:
    """Call `resync` every `interval` seconds, or as soon as `now` is set; until cancelled. A
    failure is logged, and the next round tries again."""
    wait, retry = interval, RETRY_FIRST
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await now.wait()
        now.clear()
        try:
            await resync()
        except SteerError as err:
            wait, retry = min(retry, interval), min(retry * 2, RETRY_CAP)
            log.warning("%s failed: %s; again in %gs", what, err, wait)
        else:
            wait, retry = interval, RETRY_FIRST
