"""Not losing a cancellation to a result that raced with it.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when the
cancellation of the waiting task and that result arrive in the same turn of the event loop
(gh-86296). nats-py waits that way for every reply, every flush and every message it is asked
for, so a service told to stop (SIGTERM) could have its cancellation swallowed by a reply that
happened to arrive at that moment, and go on as if nothing had happened: a node agent then ran
until its supervisor killed it, 30 s later, about one stop in three just after start.

Python 3.12 fixed it by building `wait_for` on `asyncio.timeout`, which keeps count of the
cancellations it was asked for. `install()`, called when `bus` is imported, puts that same
`wait_for` in place on older Pythons, for nats-py's calls and ours alike.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

_original_wait_for = asyncio.wait_for


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 (its signature)
    """`asyncio.wait_for` as Python 3.12 has it: a cancellation always wins over the result."""
    if timeout is not None and timeout <= 0:
        future = asyncio.ensure_future(awaitable)
        if future.done():
            return future.result()
        future.cancel()
        try:
            await future
        except asyncio.CancelledError as err:
            raise TimeoutError from err
        return future.result()  # it finished before it could be cancelled
    async with asyncio.timeout(timeout):
        return await awaitable


def install() -> None:
    """Use the fixed `wait_for` wherever `asyncio.wait_for` is called (on Python 3.11 only)."""
    if sys.version_info < (3, 12):
        setattr(asyncio, "wait_for", wait_for)  # noqa: B010 (mypy would refuse the assignment)


def installed() -> bool:
    return asyncio.wait_for is not _original_wait_for or sys.version_info >= (3, 12)
