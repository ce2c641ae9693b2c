"""The controller SDK: reconcilers driven by informers through a work queue.

A controller-runtime shape, small enough to read in one sitting:

    class Mine:
        async def reconcile(self, key: str) -> Result:
            ...  # re-read state (the informer cache or the API); never trust an event's payload
            return Result()                     # done
            return Result(requeue_after=30.0)   # look again later
            raise TerminalError("cannot fix")   # do not retry
            raise anything_else                 # retried with per-key exponential back-off

    controller = Controller("mine", Mine(), workers=4)
    controller.watch(informer)                  # or watch(informer, key_of=owner_key)
    await controller.run()                      # until cancelled

Reconciliation is level-based: the request holds only the key, and one reconcile runs per key at
a time while different keys run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bus.informer import Informer, key_of
from bus.meta import Resource
from bus.workqueue import Backoff, WorkQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None


class TerminalError(Exception):
    """A failure that retrying cannot fix (bad input, a missing dependency the user must add)."""


class Reconciler(Protocol):
    async def reconcile(self, key: str) -> Result: ...


KeyMapper = Callable[[Resource], list[str]]


def _own_key(obj: Resource) -> list[str]:
    return [key_of(obj)]


class Controller:
    def __init__(
        self, name: str, reconciler: Reconciler, *, workers: int = 1, backoff: Backoff | None = None
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.workers = workers
        self.backoff = backoff
        self.queue = WorkQueue(backoff)
        self._sources: list[tuple[Informer[Any], KeyMapper]] = []

    def watch(self, informer: Informer[Any], key_of: KeyMapper = _own_key) -> None:
        """Reconcile the keys `key_of` maps each changed object to (its own key by default)."""
        self._sources.append((informer, key_of))

        def enqueue(change: str, old: Resource | None, new: Resource | None) -> None:
            for obj in (old, new):
                if obj is not None:
                    for key in key_of(obj):
                        self.queue.add(key)

        informer.on_change(enqueue)

    async def run(self) -> None:
        """Wait for the informers to sync, then reconcile everything they hold, and every change,
        until cancelled. May run again after a cancellation (a leader that lost and won back its
        lease): a new run starts from a fresh queue and a full pass over the caches."""
        if self.queue.closed:  # an earlier run ended; keys queued before a first run are kept
            self.queue = WorkQueue(self.backoff)
        for informer, _ in self._sources:
            await informer.synced.wait()
        for informer, keys_of in self._sources:
            for obj in informer.items():
                for key in keys_of(obj):
                    self.queue.add(key)
        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(self.workers):
                    tasks.create_task(self._work())
        finally:
            self.queue.close()

    async def _work(self) -> None:
        me = asyncio.current_task()
        while True:
            # Python 3.11's wait_for can swallow a cancellation that races with a reply (fixed in
            # 3.12); a worker that was asked to stop must not go back to waiting for work.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            key = await self.queue.get()
            try:
                result = await self.reconciler.reconcile(key)
            except TerminalError as err:
                log.warning("%s: %s: %s (not retried)", self.name, key, err)
                self.queue.forget(key)
            except Exception as err:  # any other failure: retry with back-off
                delay = self.queue.add_rate_limited(key)
                log.info("%s: %s failed: %s; retrying in %.2fs", self.name, key, err, delay)
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)
