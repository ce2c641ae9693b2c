"""Not losing a cancellation to a reply that raced with it.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of raising when the
cancellation of the waiting task and that result arrive in the same turn of the event loop
(gh-86296, fixed in 3.12). nats-py waits for every request's reply that way, so a service told
to stop (SIGTERM) could have the cancellation swallowed by a reply that happened to arrive at that
moment, and go round its loop again as if nothing had happened: a node agent then ran until
its supervisor killed it. The task still counts the cancellation it was asked for
(`Task.cancelling()`), so every request checks, once it has its reply, whether it should have
stopped instead.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise CancelledError if the current task was asked to stop and has not yet."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
