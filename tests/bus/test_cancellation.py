"""A cancellation that races with a reply is never lost (Python 3.11's wait_for, bus/cancellation.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import bus
from bus import cancellation, kinds
from bus.client import Client
from bus.codec import encode
from bus.protocol import GetRequest


async def _raced() -> str:
    """Await a result that is set in the same loop turn as the task is cancelled: the moment a
    reply and SIGTERM meet. Returns the result if the cancellation was lost."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_soon(reply.set_result, "the reply")
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    return await asyncio.wait_for(reply, 5)


def test_importing_bus_puts_the_fixed_wait_for_in_place() -> None:
    assert bus.cancellation is cancellation and cancellation.installed()


async def test_the_race_raises_the_cancellation() -> None:
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(_raced())


async def test_the_race_lost_the_cancellation_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fix is for: Python 3.11's own wait_for returns the reply."""
    monkeypatch.setattr(asyncio, "wait_for", cancellation._original_wait_for)
    task = asyncio.create_task(_raced())
    try:
        assert await task == "the reply"
    except asyncio.CancelledError:
        pytest.skip("this Python's own wait_for raises the cancellation (3.12 and later)")


class RacingBus:
    """A bus whose first reply meets the requester's cancellation, as nats-py waits for it."""

    max_payload = 1 << 20
    is_connected = True  # and stays so (the client watches for a lost connection)

    def __init__(self) -> None:
        self.requests = 0

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout: float,  # noqa: ASYNC109 (nats-py's signature)
        headers: dict[str, str] | None = None,
    ) -> Any:
        self.requests += 1
        if self.requests > 1:  # the race once only: a lost cancellation then shows as a timeout
            await asyncio.sleep(0)
            return _Reply()
        await _raced()
        return _Reply()


class _Reply:
    headers: dict[str, str] | None = None
    data = b"{}"


async def test_a_heartbeat_loop_stops_when_its_reply_raced_the_cancellation() -> None:
    bus_ = RacingBus()
    client = Client(bus_)  # type: ignore[arg-type]

    async def heartbeat() -> None:
        while True:  # as a node agent's Lease renewals
            await client.request("get", kinds.BY_KIND["Namespace"], "", encode(GetRequest(name="x")))
            await asyncio.sleep(0)

    task = asyncio.create_task(heartbeat())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # with the lost cancellation: it loops on, and this times out
    assert bus_.requests == 1


async def test_a_task_that_handled_a_cancellation_goes_on_working() -> None:
    """A count of cancellations left raised (Python 3.11's task group, when a child fails after
    the group's body ended, never takes its own back) stops nothing later on."""

    async def after_a_failed_group() -> int:
        with contextlib.suppress(BaseExceptionGroup):
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(fail_soon())
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1)  # handled here, and never uncancelled
        answers = 0
        for _ in range(3):
            await asyncio.wait_for(asyncio.sleep(0), 5)
            answers += 1
        return answers

    assert await asyncio.create_task(after_a_failed_group()) == 3


async def fail_soon() -> None:
    await asyncio.sleep(0)
    raise ValueError("a child's bug")


@pytest.mark.parametrize("seconds", [0, -1])
async def test_no_time_at_all_times_out_unless_already_done(seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(1), seconds)
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(7)
    assert await asyncio.wait_for(done, seconds) == 7
