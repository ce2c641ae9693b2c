"""Informers: a local cache of one kind, fed by a watch, kept whole across reconnects.

The watch lists everything, marks the synced point, then streams changes. When the connection
drops, the watch says so (the informer is not `live` any more) and, once the connection is back,
resumes right after the last revision it saw, so the cache catches up on exactly what it missed
and is `live` again. If the watch breaks for good (it could not start), the informer watches again:
the new listing is compared with the cache, so objects deleted while we were away are reported as
deleted and nothing goes silently stale. Handlers are told of every change; they must be quick and
must not block (put a key on a queue, set a flag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from bus import subjects
from bus.backoff import Backoff
from bus.connection import ConnectionClosed
from bus.errors import SteerError
from bus.meta import Resource
from bus.store import Store

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
Change = Literal["ADDED", "MODIFIED", "DELETED"]

RETRY_CAP = 1.0  # the longest wait before watching again after a watch failed


def key_of(obj: Resource) -> str:
    return f"{obj.metadata.namespace}/{obj.metadata.name}" if obj.metadata.namespace else obj.metadata.name


class Informer(Generic[R]):
    def __init__(self, store: Store, cls: type[R], namespace: str = subjects.ALL) -> None:
        self.store = store
        self.cls = cls
        self.namespace = namespace
        self.cache: dict[str, R] = {}
        # The same objects by namespace: controllers mostly look at one namespace at a time.
        self._by_namespace: dict[str, dict[str, R]] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Callable[[Change, R | None, R | None], None]] = []
        self._live = False
        self._live_handlers: list[Callable[[bool], None]] = []

    def on_change(self, handler: Callable[[Change, R | None, R | None], None]) -> None:
        """`handler(change, old, new)` on every change after (and during) the initial listing."""
        self._handlers.append(handler)

    @property
    def live(self) -> bool:
        """Whether the cache follows the store right now: the watch is synced and unbroken. While
        it is not, the cache holds the last state seen, and silence means nothing."""
        return self._live

    def on_live(self, handler: Callable[[bool], None]) -> None:
        """`handler(live)` whenever `live` changes; quick and non-blocking, as change handlers."""
        self._live_handlers.append(handler)

    def _set_live(self, live: bool) -> None:
        if live == self._live:
            return
        self._live = live
        for handler in self._live_handlers:
            try:
                handler(live)
            except Exception:
                log.exception("informer liveness handler failed")

    def get(self, key: str) -> R | None:
        return self.cache.get(key)

    def items(self) -> list[R]:
        return list(self.cache.values())

    def in_namespace(self, namespace: str) -> list[R]:
        """The cached objects of one namespace."""
        return list(self._by_namespace.get(namespace, {}).values())

    def put(self, obj: R) -> None:
        """Hold a version read live, ahead of the watch, without telling the handlers (the watch
        brings the same version later, and it is skipped then)."""
        self._store(key_of(obj), obj)

    def _store(self, key: str, obj: R) -> None:
        self.cache[key] = obj
        self._by_namespace.setdefault(obj.metadata.namespace, {})[key] = obj

    def _drop(self, key: str) -> R:
        obj = self.cache.pop(key)
        same = self._by_namespace[obj.metadata.namespace]
        del same[key]
        if not same:
            del self._by_namespace[obj.metadata.namespace]
        return obj

    def _tell(self, change: Change, old: R | None, new: R | None) -> None:
        for handler in self._handlers:
            try:
                handler(change, old, new)
            except Exception:  # a handler's bug must not stop the informer
                log.exception("informer handler failed")

    async def run(self) -> None:
        """Keep the cache current until cancelled.

        The watch itself resumes across reconnects; it ends only when it cannot. If it could not
        start, the informer watches again, after a jittered back-off, and the new listing is
        compared with the cache; if the connection is closed for good, ConnectionClosed ends it.
        """
        retry = Backoff(first=0.1, cap=RETRY_CAP)
        failing = ""
        while True:
            try:
                await self._watch(retry)
            except ConnectionClosed:
                raise  # nothing will ever work over it again: the service ends
            except SteerError as err:
                if err.message != failing:  # one line per new cause, not one per attempt
                    log.warning("%s watch failed: %s; watching again", self.cls.__name__, err.message)
                    failing = err.message
            finally:
                self._set_live(False)
            await asyncio.sleep(retry.next())

    async def _watch(self, retry: Backoff) -> None:
        listed: set[str] = set()
        listing = True
        async with contextlib.aclosing(self.store.watch(self.cls, self.namespace)) as events:
            async for event in events:
                if event.type == "STALE":
                    self._set_live(False)
                    continue
                if event.type == "SYNCED":
                    if listing:
                        for key in [k for k in self.cache if k not in listed]:
                            self._tell("DELETED", self._drop(key), None)  # gone while we were away
                        listing = False
                        retry.reset()
                        self.synced.set()
                    self._set_live(True)
                    continue
                obj = event.object
                if obj is None:
                    continue
                key = key_of(obj)
                old = self.cache.get(key)
                if event.type == "DELETED":
                    if old is not None:
                        self._drop(key)
                        self._tell("DELETED", old, None)
                    continue
                if listing:
                    listed.add(key)
                if old is not None and old.metadata.resource_version == obj.metadata.resource_version:
                    continue  # seen already (a re-listing, or a version read live with put())
                self._store(key, obj)
                self._tell("ADDED" if old is None else "MODIFIED", old, obj)
