"""Values in the store that cannot be read: poison, kept out of everyone's way.

A value that does not decode as its kind (written by hand, by a bug, by another version) used
to make every listing of that kind fail, for every component. Now the store treats it as absent:
lists and watches leave it out (a watch that knew the key reports it DELETED), a get by name
fails with an error that says what is wrong and how to remove it, and a delete by name removes
it (compare-and-set on its revision). Each one is logged once per key and revision by each
process that meets it, and recorded as a Warning event about the object, once per key and
revision for the whole cluster: the event's name is derived from them, so the components that
meet it after the first find it already recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

from bus import kinds, subjects
from bus.errors import AlreadyExists, Internal, SteerError
from bus.events import make_event
from bus.meta import ObjectMeta, ObjectReference, Resource
from bus.resources import Event

log = logging.getLogger(__name__)

REASON = "Unreadable"
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class UnreadableEntry:
    """One stored value that could not be read: where it is, and why."""

    info: kinds.KindInfo
    bucket: str
    key: str
    revision: int
    problem: str

    @property
    def namespace(self) -> str:
        return subjects.split_key(self.key)[0]

    @property
    def name(self) -> str:
        return subjects.split_key(self.key)[1]

    def message(self) -> str:
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        delete = f"steer delete {self.info.singular} {self.name}" + (
            f" -n {self.namespace}" if self.namespace else ""
        )
        return (
            f'{self.info.qualified_plural} "{self.name}"{where} could not be read: revision {self.revision}'
            f' of key "{self.key}" in bucket {self.bucket} {self.problem}; it is left out until it is'
            f" replaced or deleted ({delete})"
        )

    def event(self, component: str) -> Event:
        """The Warning event about it, named after the key and revision (see the module docstring)."""
        involved = ObjectReference(
            api_version=self.info.api_version,
            kind=self.info.kind,
            namespace=self.namespace,
            name=self.name,
        )
        event = make_event(
            involved, reason=REASON, message=self.message(), type="Warning", component=component
        )
        digest = hashlib.sha256(f"{self.bucket}/{self.key}/{self.revision}".encode()).hexdigest()[:16]
        base = self.name if _LABEL.fullmatch(self.name) and len(self.name) <= 200 else "unreadable"
        event.metadata.name = f"{base}.{digest}"
        event.metadata.namespace = self.namespace or "default"
        return event

    def placeholder(self) -> Resource:
        """The smallest object of its kind with its name: what a delete of it replies with."""
        metadata = ObjectMeta(name=self.name, namespace=self.namespace)
        body = _required(self.info.type)
        body["metadata"] = msgspec.to_builtins(metadata)
        return msgspec.convert(body, self.info.type)


class UnreadableError(Internal):
    """A get of an object whose stored value cannot be read."""

    def __init__(self, entry: UnreadableEntry) -> None:
        super().__init__(entry.message())
        self.entry = entry


class UnreadableReporter:
    """Records the Warning event of each unreadable entry a process meets, through `record` (the
    API client's create, or the API's own store). Register it with `Store.on_unreadable` and run
    `run()` in the component's task group; reporting never blocks a reader."""

    def __init__(self, record: Callable[[Event], Awaitable[object]], *, component: str) -> None:
        self.record = record
        self.component = component
        self._queue: asyncio.Queue[UnreadableEntry] = asyncio.Queue()

    def __call__(self, entry: UnreadableEntry) -> None:
        self._queue.put_nowait(entry)  # the store tells each key and revision once

    async def run(self) -> None:
        while True:
            entry = await self._queue.get()
            try:
                await self.record(entry.event(self.component))
            except AlreadyExists:
                pass  # another component recorded it first
            except SteerError as err:
                log.warning("could not record the %s event of %s: %s", REASON, entry.key, err.message)


def left_out(info: kinds.KindInfo, entries: list[UnreadableEntry]) -> str:
    """The warning of a listing that left out values it could not read (one line)."""
    shown = ", ".join(
        f'"{e.name}"'
        + (f' in namespace "{e.namespace}"' if e.namespace else "")
        + f" (revision {e.revision})"
        for e in entries[:10]
    )
    more = f" and {len(entries) - 10} more" if len(entries) > 10 else ""
    return (
        f"{len(entries)} {info.qualified_plural} could not be read and are left out: {shown}{more};"
        f" `steer get {info.plural} NAME` says why, `steer delete {info.plural} NAME` removes one"
    )


def _required(cls: type[Any]) -> dict[str, Any]:
    """The least a struct needs to decode: every required field, empty."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return {f.encode_name: _empty(f.type) for f in info.fields if f.required}


def _empty(t: mi.Type) -> Any:
    match t:
        case mi.StructType():
            return _required(t.cls)
        case mi.ListType() | mi.SetType() | mi.FrozenSetType() | mi.VarTupleType():
            return []
        case mi.DictType():
            return {}
        case mi.StrType():
            return ""
        case mi.BoolType():
            return False
        case mi.IntType() | mi.FloatType():
            return 0
        case mi.LiteralType():
            return t.values[0]
        case mi.UnionType():
            return _empty(t.types[0])
    return None
