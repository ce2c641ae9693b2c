"""Expectations: what a controller has just created and deleted, until its informer has seen it.

A controller that reads its children from an informer's cache sees its own writes only after the
watch delivers them. Reconciling again before then (a status change, a requeue) would count the
pods just created as missing and create them again, or the pods just deleted as present and
delete more. Kubernetes' controllers keep "expectations" for this: after writing, a controller
records how many creations and which deletions it expects to observe; until the informer has
shown them all (or they expire, in case a watch event was lost) it does not act on the counts.

    expectations = Expectations()
    pods.on_change(expectations.observe(owner_key))   # owner_key(pod) -> the parent's key or None
    ...
    if expectations.satisfied(key):
        expectations.expect(key, creations=3, deletions={"ns/web-abc"})
        ... create 3, delete web-abc; on a failed write: expectations.created(key) / .deleted(...)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bus.informer import Change, key_of
from bus.meta import Resource

TTL = 300.0  # Kubernetes' ExpectationsTimeout: a lost event delays a controller, never stops it


@dataclass
class _Pending:
    creations: int
    deletions: set[str]
    since: float = field(default_factory=time.monotonic)


class Expectations:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._pending: dict[str, _Pending] = {}

    def expect(self, key: str, *, creations: int = 0, deletions: Iterable[str] = ()) -> None:
        """Before writing: `creations` children to be created, the children keyed `deletions` deleted."""
        self._pending[key] = _Pending(creations, set(deletions))

    def satisfied(self, key: str) -> bool:
        """True when everything expected for `key` has been observed, or the wait has expired."""
        pending = self._pending.get(key)
        if pending is None:
            return True
        if (pending.creations <= 0 and not pending.deletions) or time.monotonic() - pending.since > self.ttl:
            del self._pending[key]
            return True
        return False

    def created(self, key: str) -> None:
        """One creation observed (or failed, so never to be observed)."""
        if (pending := self._pending.get(key)) is not None:
            pending.creations -= 1

    def deleted(self, key: str, child: str) -> None:
        """The deletion of `child` observed (or failed, so never to be observed)."""
        if (pending := self._pending.get(key)) is not None:
            pending.deletions.discard(child)

    def forget(self, key: str) -> None:
        """The parent is gone: expect nothing more for it."""
        self._pending.pop(key, None)

    def observe(
        self, owner_key: Callable[[Resource], str | None]
    ) -> Callable[[Change, Resource | None, Resource | None], None]:
        """An informer handler for the children: new ones count as created; deleted ones, and ones
        given a deletionTimestamp (a graceful deletion has begun), as deleted."""

        def handler(change: Change, old: Resource | None, new: Resource | None) -> None:
            if change == "ADDED" and new is not None and (owner := owner_key(new)) is not None:
                self.created(owner)
                if new.metadata.deletion_timestamp is not None:
                    self.deleted(owner, key_of(new))
            elif change == "MODIFIED" and new is not None and new.metadata.deletion_timestamp is not None:
                if (owner := owner_key(new)) is not None:
                    self.deleted(owner, key_of(new))
            elif change == "DELETED" and old is not None and (owner := owner_key(old)) is not None:
                self.deleted(owner, key_of(old))

        return handler
