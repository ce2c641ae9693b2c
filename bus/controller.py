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

Failures are logged for what they are. A `SteerError` is the API's answer (a Conflict, a
Timeout, the bus away): the world moved, and retrying is the cure, so it is one line at INFO.
Anything else is a bug in the reconciler (a TypeError, a KeyError): an ERROR with its
traceback. Either way a key that keeps failing the same way is logged in full once, then at
DEBUG for every retry, and once more at INFO when it succeeds again: a bug retried with back-off
for days fills no disk, and the traceback is there at the top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bus.errors import SteerError
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


async def all_of(writes: Iterable[Awaitable[object]]) -> None:
    """Run a reconcile's independent writes at once and wait for every one of them; then raise
    the first failure, if any. Unlike a bare `asyncio.gather`, a failure does not return while
    the other writes still run unowned (their outcome unseen, racing the retry); unlike a task
    group, it does not cancel them half-way either: a create cancelled after its request left
    may still happen, and the caller's bookkeeping (expectations) must know which did."""
    results = await asyncio.gather(*writes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


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
        self._failing: dict[str, str] = {}  # key -> how it last failed (logged in full once)
        self._sweeps: list[tuple[float, Callable[[], Awaitable[Iterable[str]]]]] = []

    def watch(self, informer: Informer[Any], key_of: KeyMapper = _own_key) -> None:
        """Reconcile the keys `key_of` maps each changed object to (its own key by default)."""
        self._sources.append((informer, key_of))

        def enqueue(change: str, old: Resource | None, new: Resource | None) -> None:
            for obj in (old, new):
                if obj is not None:
                    for key in key_of(obj):
                        self.queue.add(key)

        informer.on_change(enqueue)

    def periodic(self, every: float, sweep: Callable[[], Awaitable[Iterable[str]]]) -> None:
        """While the controller runs (after its informers synced), call `sweep()` every `every`
        seconds and reconcile the keys it returns: for judgements over many objects at once,
        which no single key's reconcile can make (the node lifecycle controller's zones)."""
        self._sweeps.append((every, sweep))

    async def _sweep(self, every: float, sweep: Callable[[], Awaitable[Iterable[str]]]) -> None:
        failed = ""  # how the last sweep failed: logged in full once, as a reconcile's failure
        while True:
            try:
                for key in await sweep():
                    self.queue.add(key)
                failed = ""
            except Exception as err:
                how = f"{type(err).__name__}: {err}"
                if how == failed:
                    log.debug("%s: periodic sweep failed again: %s", self.name, how)
                elif isinstance(err, SteerError):
                    log.info("%s: periodic sweep failed: %s", self.name, err)
                else:  # a bug: said loudly, and the sweep goes on
                    log.error("%s: periodic sweep raised %s (a bug)", self.name, how, exc_info=err)
                failed = how
            await asyncio.sleep(every)

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
                for every, sweep in self._sweeps:
                    tasks.create_task(self._sweep(every, sweep))
        finally:
            self.queue.close()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                result = await self.reconciler.reconcile(key)
            except TerminalError as err:
                log.warning("%s: %s: %s (not retried)", self.name, key, err)
                self.queue.forget(key)
                self._failing.pop(key, None)
            except Exception as err:  # any other failure: retry with back-off
                delay = self.queue.add_rate_limited(key)
                self._log_failure(key, err, delay)
            else:
                self._recovered(key)
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.queue.done(key)

    def _log_failure(self, key: str, err: Exception, delay: float) -> None:
        """In full the first time a key fails this way; at DEBUG while it goes on failing so."""
        how = f"{type(err).__name__}: {err}"
        failures = self.queue.failures(key)
        if self._failing.get(key) == how:
            log.debug(
                "%s: %s failed again (%d times): %s; retrying in %.2fs", self.name, key, failures, how, delay
            )
            return
        self._failing[key] = how
        if isinstance(err, SteerError):
            log.info("%s: %s failed: %s; retrying in %.2fs", self.name, key, err, delay)
        else:
            log.error(
                "%s: reconciling %s raised %s (a bug); retrying in %.2fs with back-off",
                self.name,
                key,
                how,
                delay,
                exc_info=err,
            )

    def _recovered(self, key: str) -> None:
        if self._failing.pop(key, None) is not None:
            log.info("%s: %s reconciled after %d failed tries", self.name, key, self.queue.failures(key))
