"""A cancellation that races with a request's reply is not lost (Python 3.11's wait_for)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from bus import kinds
from bus.client import Client
from bus.codec import encode
from bus.protocol import GetRequest


class _Reply:
    headers: dict[str, str] | None = None
    data = b"{}"


class RacingBus:
    """Answers each request in the same loop turn as its caller is cancelled, the way a reply
    and SIGTERM can meet: the reply is set while the task is already on its way to a
    cancellation, and `asyncio.wait_for` (as nats-py waits) sees both."""

    max_payload = 1 << 20

    def __init__(self) -> None:
        self.requests = 0

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:  # noqa: ASYNC109 (nats-py's signature)
        self.requests += 1
        if self.requests > 1:  # the race once only, so that a lost cancellation shows as a timeout
            await asyncio.sleep(0)
            return _Reply()
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[_Reply] = loop.create_future()
        loop.call_soon(reply.set_result, _Reply())
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return await asyncio.wait_for(reply, timeout)


async def test_the_race_itself_loses_the_cancellation_in_plain_wait_for() -> None:
    """What the check defends against: on this Python, the reply wins."""
    bus = RacingBus()
    try:
        await bus.request("x", b"", 5)
    except asyncio.CancelledError:
        pytest.skip("this Python's wait_for raises the cancellation itself (3.12+)")
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 1
    task.uncancel()


async def test_a_request_that_raced_a_cancellation_raises_it() -> None:
    bus = RacingBus()
    client = Client(bus)  # type: ignore[arg-type]

    async def loop_forever() -> None:
        while True:  # a heartbeat loop, as a node agent's
            await client.request("get", kinds.BY_KIND["Namespace"], "", encode(GetRequest(name="x")))
            await asyncio.sleep(0)

    task = asyncio.create_task(loop_forever())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # without the check: it loops on, and this times out
    assert bus.requests == 1


async def test_a_cancellation_counted_earlier_and_handled_does_not_stop_later_requests() -> None:
    """A task whose count of cancellations stayed raised (Python 3.11's task group, when a child
    fails after the group's body ended, never takes its cancellation back) goes on working."""
    client = Client(AnsweringBus())  # type: ignore[arg-type]

    async def after_a_failed_group() -> int:
        with contextlib.suppress(BaseExceptionGroup):
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(fail_soon())
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)  # handled here, and never uncancelled
        answers = 0
        for _ in range(3):
            await client.request("get", kinds.BY_KIND["Namespace"], "", encode(GetRequest(name="x")))
            answers += 1
        return answers

    assert await asyncio.create_task(after_a_failed_group()) == 3


async def fail_soon() -> None:
    await asyncio.sleep(0)
    raise ValueError("a child's bug")


class AnsweringBus:
    max_payload = 1 << 20

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:  # noqa: ASYNC109 (nats-py's signature)
        return await asyncio.wait_for(asyncio.sleep(0, _Reply()), timeout)
