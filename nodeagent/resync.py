"""The agent's listings: every so often, and at once when asked (after a reconnect).

The feeds a node agent learns from are core NATS, where a message can be lost; a periodic full
listing is what makes the agent right in the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bus.errors import SteerError

log = logging.getLogger(__name__)


async def resync_loop(
    resync: Callable[[], Awaitable[None]], interval: float, now: asyncio.Event, what: str
) -> None:
    """Call `resync` every `interval` seconds, or as soon as `now` is set; until cancelled. A
    failure is logged, and the next round tries again."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await now.wait()
        now.clear()
        try:
            await resync()
        except SteerError as err:
            log.warning("%s failed: %s", what, err)
