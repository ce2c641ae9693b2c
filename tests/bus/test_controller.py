"""How the controller loop reports a failing reconcile: a bug is an ERROR with its traceback,
logged in full once rather than at every retry; an API error is one line; back-off is kept."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus.controller import Controller, Result, all_of
from bus.errors import Conflict
from bus.workqueue import Backoff


class Failing:
    """Raises each of `errors` in turn, then succeeds; `done` is set on the first success."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0
        self.done = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.done.set()
        return Result()


async def run_until_done(controller: Controller, reconciler: Failing) -> None:
    task = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(10):
            await reconciler.done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bus.controller" and r.levelno == level]


async def test_a_bug_is_an_error_with_its_traceback_once_then_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bus.controller")
    bug = [TypeError("unsupported operand type(s) for +: 'int' and 'str'") for _ in range(6)]
    reconciler = Failing(bug)
    controller = Controller("t", reconciler, backoff=Backoff(base=0.001))
    controller.queue.add("ns/thing")
    await run_until_done(controller, reconciler)

    assert reconciler.calls == 7  # retried, with back-off, until it went through
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is TypeError
    assert "ns/thing" in errors[0].getMessage() and "TypeError" in errors[0].getMessage()
    assert len(records(caplog, logging.DEBUG)) == 5  # each retry after the first: quiet
    assert any("after 6 failed tries" in r.getMessage() for r in records(caplog, logging.INFO))


async def test_a_new_way_of_failing_is_logged_in_full_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bus.controller")
    reconciler = Failing([KeyError("a"), KeyError("a"), ValueError("b")])
    controller = Controller("t", reconciler, backoff=Backoff(base=0.001))
    controller.queue.add("k")
    await run_until_done(controller, reconciler)
    assert [r.exc_info[0] for r in records(caplog, logging.ERROR) if r.exc_info] == [KeyError, ValueError]


async def test_an_api_error_is_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bus.controller")
    reconciler = Failing([Conflict("the object has been modified"), Conflict("the object has been modified")])
    controller = Controller("t", reconciler, backoff=Backoff(base=0.001))
    controller.queue.add("k")
    await run_until_done(controller, reconciler)
    assert not records(caplog, logging.ERROR)
    infos = [
        r
        for r in records(caplog, logging.INFO)
        if "Conflict" in r.getMessage() or "modified" in r.getMessage()
    ]
    assert len(infos) == 1 and infos[0].exc_info is None


async def test_all_of_waits_for_every_write_before_raising_the_first_failure() -> None:
    finished: list[str] = []
    release = asyncio.Event()

    async def fails_at_once() -> None:
        raise Conflict("taken")

    async def slow(name: str) -> None:
        await release.wait()
        finished.append(name)

    attempt = asyncio.create_task(all_of([fails_at_once(), slow("a"), slow("b")]))
    await asyncio.sleep(0.05)
    assert not attempt.done()  # the failure does not return while the others run
    release.set()
    with pytest.raises(Conflict):
        await attempt
    assert sorted(finished) == ["a", "b"]


async def test_all_of_cancelled_cancels_every_write() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def endless() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    attempt = asyncio.create_task(all_of([endless(), endless()]))
    await started.wait()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert cancelled == [True, True]


async def test_a_periodic_sweep_queues_the_keys_it_returns_and_survives_its_bugs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bus.controller")
    reconciled: list[str] = []
    done = asyncio.Event()

    class Seen:
        async def reconcile(self, key: str) -> Result:
            reconciled.append(key)
            done.set()
            return Result()

    sweeps = 0

    async def sweep() -> list[str]:
        nonlocal sweeps
        sweeps += 1
        if sweeps < 4:
            raise KeyError("zone")  # a bug, three times over
        return ["n1"]

    controller = Controller("t", Seen())
    controller.periodic(0.001, sweep)
    task = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert reconciled[0] == "n1"
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1 and errors[0].exc_info is not None  # once, with its traceback
