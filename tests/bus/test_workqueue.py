"""The work queue and the controller loop, without a bus: de-duplication, serial per key,
parallel across keys, back-off, terminal errors and requeue_after."""

from __future__ import annotations

import asyncio

import pytest

from bus.controller import Controller, Result, TerminalError
from bus.workqueue import Backoff, WorkQueue


@pytest.mark.parametrize("failures,delay", [(0, 0.005), (1, 0.01), (3, 0.04), (40, 1000.0)])
def test_backoff_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    assert Backoff().delay(failures) == pytest.approx(delay)


async def test_a_key_waiting_is_queued_once() -> None:
    queue = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]


async def test_a_key_added_while_processing_runs_again_after() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")  # changed while being reconciled
    assert len(queue) == 0  # not handed to another worker meanwhile
    queue.done(key)
    assert await queue.get() == "a"


async def test_rate_limited_requeue_grows_and_forget_resets() -> None:
    queue = WorkQueue(Backoff(base=0.001, cap=1.0))
    assert queue.add_rate_limited("a") == pytest.approx(0.001)
    assert queue.add_rate_limited("a") == pytest.approx(0.002)
    assert queue.failures("a") == 2
    queue.forget("a")
    assert queue.failures("a") == 0
    async with asyncio.timeout(5):
        assert await queue.get() == "a"


class Recorder:
    def __init__(self, outcomes: dict[str, list[object]]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlap = False
        self.finished = asyncio.Event()
        self.parallel = asyncio.Event()

    async def reconcile(self, key: str) -> Result:
        if key in self.running:
            self.overlap = True
        self.running.add(key)
        if len(self.running) > 1:
            self.parallel.set()
        self.calls.append(key)
        try:
            await asyncio.sleep(0)
            outcome = self.outcomes[key].pop(0) if self.outcomes.get(key) else Result()
            if isinstance(outcome, Exception):
                raise outcome
            assert isinstance(outcome, Result)
            return outcome
        finally:
            self.running.discard(key)
            if not any(self.outcomes.values()):
                self.finished.set()


async def run_until(controller: Controller, event: asyncio.Event) -> None:
    task = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(10):
            await event.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_failures_are_retried_terminal_errors_are_not() -> None:
    recorder = Recorder(
        {"flaky": [RuntimeError("once"), RuntimeError("twice"), Result()], "bad": [TerminalError("no")]}
    )
    controller = Controller("t", recorder, workers=2, backoff=Backoff(base=0.001))
    controller.queue.add("flaky")
    controller.queue.add("bad")
    await run_until(controller, recorder.finished)
    assert recorder.calls.count("flaky") == 3
    assert recorder.calls.count("bad") == 1
    assert not recorder.overlap


async def test_requeue_after_comes_back() -> None:
    recorder = Recorder({"a": [Result(requeue_after=0.01), Result()]})
    controller = Controller("t", recorder)
    controller.queue.add("a")
    await run_until(controller, recorder.finished)
    assert recorder.calls == ["a", "a"]


async def test_keys_run_in_parallel_across_workers() -> None:
    recorder = Recorder({k: [Result()] for k in "abcd"})
    controller = Controller("t", recorder, workers=4)
    for key in "abcd":
        controller.queue.add(key)
    await run_until(controller, recorder.parallel)
    assert not recorder.overlap


async def test_a_controller_runs_again_after_being_stopped() -> None:
    """A leader that lost its lease and won it back: the second run still takes keys."""
    first = Recorder({"a": [Result()]})
    controller = Controller("t", first)
    controller.queue.add("a")
    await run_until(controller, first.finished)
    second = Recorder({"b": [Result()]})
    controller.reconciler = second
    assert controller.queue.closed
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)  # the new run has made its fresh queue
    controller.queue.add("b")
    try:
        async with asyncio.timeout(10):
            await second.finished.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert second.calls == ["b"]
