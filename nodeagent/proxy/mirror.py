"""Every object of one kind as a node agent knows it, from the API's feed and from listings.

Agents have no JetStream access, so they cannot watch a bucket. The API publishes each change of
a Service or Endpoints on `steer.feed.<plural>` (core NATS: a message can be lost or come late),
and the agent lists the kind now and then. The two sources agree in any order:

- a version older than the one held (by resourceVersion, the KV revision) is ignored;
- a deletion leaves a tombstone at the object's last revision, so a listing taken before the
  deletion but answered after it does not bring the object back;
- a listing removes what it does not hold, except what the feed told us of after the listing
  was asked for (it may be newer than the listing).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Generic, TypeVar

from bus.meta import Resource

R = TypeVar("R", bound=Resource)

Key = tuple[str, str]  # (namespace, name)


def key_of(obj: Resource) -> Key:
    return obj.metadata.namespace, obj.metadata.name


def revision(obj: Resource) -> int:
    try:
        return int(obj.metadata.resource_version)
    except ValueError:
        return 0


class Mirror(Generic[R]):
    def __init__(self) -> None:
        self.objects: dict[Key, R] = {}
        self._tombstones: dict[Key, int] = {}
        self._clock = itertools.count(1)
        self._seen: dict[Key, int] = {}  # when (by our clock) each key last changed

    def get(self, key: Key) -> R | None:
        return self.objects.get(key)

    def mark(self) -> int:
        """Call before asking for a listing; hand the mark to `replace`."""
        return next(self._clock)

    def put(self, obj: R) -> bool:
        """A version from the feed or a listing; whether it changed what we hold."""
        key, rev = key_of(obj), revision(obj)
        held = self.objects.get(key)
        if rev <= self._tombstones.get(key, 0) or (held is not None and rev <= revision(held)):
            return False
        self._tombstones.pop(key, None)
        self.objects[key] = obj
        self._seen[key] = next(self._clock)
        return True

    def delete(self, obj: R) -> bool:
        """The object (at its last version) is gone."""
        key, rev = key_of(obj), revision(obj)
        if rev > self._tombstones.get(key, 0):
            self._tombstones[key] = rev
            self._seen[key] = next(self._clock)
        held = self.objects.get(key)
        if held is None or revision(held) > rev:  # recreated since
            return False
        del self.objects[key]
        return True

    def replace(self, items: Iterable[R], mark: int) -> bool:
        """A full listing asked for at `mark`; whether anything changed."""
        listed = {key_of(obj): obj for obj in items}
        changed = False
        for obj in listed.values():
            changed |= self.put(obj)
        for key in list(self.objects):
            if key not in listed and self._seen.get(key, 0) < mark:
                del self.objects[key]
                changed = True
        # A deletion seen before the listing was asked for is in the listing already.
        self._tombstones = {k: rev for k, rev in self._tombstones.items() if self._seen.get(k, 0) > mark}
        self._seen = {k: t for k, t in self._seen.items() if k in self.objects or k in self._tombstones}
        return changed
