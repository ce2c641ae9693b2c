"""Not losing a cancellation to a reply that raced with it.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when the
cancellation of the waiting task and that result arrive in the same turn of the event loop
(gh-86296, fixed in 3.12). nats-py waits for every request's reply that way, so a service told
to stop (SIGTERM) could have the cancellation swallowed by a reply that happened to arrive at that
moment, and go round its loop again as if nothing had happened: a node agent then ran until
its supervisor killed it.

The task still counts the cancellation it was asked for (`Task.cancelling()`), so a request
compares the count before and after: one that grew while nobody raised it was lost, and is
raised now. Only the growth counts, never the count itself: on 3.11 a task group whose child
fails after the group's body has ended leaves its parent's count raised for good (also fixed in
3.12), and a task that caught that group's errors must go on working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def keeping_cancellation(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; if the task was cancelled meanwhile and the cancellation got lost on
    the way (a reply that raced it), raise it now."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result
