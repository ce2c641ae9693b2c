"""`steer wait`: block until objects meet a status condition or are deleted, as `kubectl wait`.

Each kind is followed through one store watch (list, then changes), never by polling. A named
object that does not exist yet is waited for until it appears and meets the condition; one that
does not exist counts as deleted at once. With `-l SELECTOR` or `--all`, the objects are those
the listing finds when the wait starts (kubectl's rule: objects created later are not waited for).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
import typer

from bus import kinds, selectors, subjects
from bus.errors import BadRequest, SteerError
from bus.meta import Resource
from bus.store import Store, WatchEvent
from cli.durations import parse_duration
from cli.errors import run_async, stderr
from cli.options import AllNamespaces, Namespace, Selector, namespace_or_default
from cli.session import session

_STATUSES = {"true": "True", "false": "False", "unknown": "Unknown"}
_FOR_USAGE = "use --for=delete or --for=condition=NAME[=true|false|unknown]"

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


@dataclass(frozen=True)
class Goal:
    """What `--for` asks: deletion (no condition), or a condition with the given status."""

    condition: str = ""
    status: str = "True"

    @property
    def delete(self) -> bool:
        return not self.condition

    def met_by(self, obj: Resource) -> bool:
        """Whether `status.conditions` holds the condition (its type compared without case)."""
        conditions = getattr(getattr(obj, "status", None), "conditions", None) or []
        wanted = self.condition.lower()
        return any(c.type.lower() == wanted and c.status == self.status for c in conditions)


def parse_goal(text: str) -> Goal:
    if text == "delete":
        return Goal()
    what, _, rest = text.partition("=")
    name, has_value, value = rest.partition("=")
    if what != "condition" or not name:
        raise BadRequest(f'invalid --for "{text}": {_FOR_USAGE}')
    status = _STATUSES.get(value.lower()) if has_value else "True"
    if status is None:
        raise BadRequest(f'invalid --for "{text}": a condition is true, false or unknown, not "{value}"')
    return Goal(name, status)


def parse_timeout(text: str) -> float | None:
    """Seconds to wait: 0 checks once, a negative duration waits without limit."""
    try:
        seconds = parse_duration(text.removeprefix("-")).total_seconds()
    except ValueError as err:
        raise BadRequest(f"--timeout: {err}") from None
    return None if text.startswith("-") else seconds


def has_conditions(info: kinds.KindInfo) -> bool:
    status = next((f.type for f in msgspec.structs.fields(info.type) if f.name == "status"), None)
    return isinstance(status, type) and "conditions" in getattr(status, "__struct_fields__", ())


@dataclass(frozen=True)
class Target:
    """Objects of one kind: by name, or (without names) those the selector matches at the start."""

    info: kinds.KindInfo
    names: tuple[str, ...] = ()
    selector: str = ""


def parse_targets(args: list[str], *, selector: str, everything: bool) -> list[Target]:
    """`pod/a deploy/b`, `pods a b`, or `pods -l app=x` / `pods --all`."""
    if not args:
        raise BadRequest("specify what to wait for: KIND/NAME..., KIND NAME..., or KIND -l SELECTOR")
    if "/" in args[0]:
        by_kind: dict[str, list[str]] = {}
        for arg in args:
            kind, slash, name = arg.partition("/")
            if not slash or not name:
                raise BadRequest(f'"{arg}" is not KIND/NAME: name each object so, or give one KIND and names')
            by_kind.setdefault(kinds.resolve(kind).kind, []).append(name)
        found = [Target(kinds.BY_KIND[kind], tuple(names)) for kind, names in by_kind.items()]
    else:
        found = [Target(kinds.resolve(args[0]), tuple(args[1:]))]
    named = any(target.names for target in found)
    if named and (selector or everything):
        raise BadRequest("names cannot be given together with -l SELECTOR or --all")
    if not named and not selector and not everything:
        raise BadRequest(f"specify names of {found[0].info.plural} to wait for, or -l SELECTOR, or --all")
    if selector:
        try:
            selectors.parse(selector)
        except ValueError as err:
            raise BadRequest(f"invalid label selector: {err}") from None
        found = [Target(t.info, selector=selector) for t in found]
    return found


@dataclass
class Tracker:
    """What one watch has shown of a target's objects, and which of them are still pending."""

    target: Target
    goal: Goal
    namespace: str
    latest: dict[Key, Resource] = field(default_factory=dict)
    pending: set[Key] | None = None  # for a selector: fixed when the listing ends
    synced: bool = False

    def __post_init__(self) -> None:
        self._selector = selectors.parse(self.target.selector)
        if self.target.names:
            ns = self.namespace if self.target.info.namespaced else ""
            self.pending = {(ns, name) for name in self.target.names}

    @property
    def finished(self) -> bool:
        return self.synced and not self.pending

    def feed(self, event: WatchEvent) -> list[Key]:
        """Take one watch event in; the objects that are done because of it."""
        if event.type == "SYNCED":
            self.synced = True
            if self.pending is None:
                self.pending = set(self.latest)
                if not self.pending and not self.goal.delete:
                    raise BadRequest(f"no matching resources found ({self.target.info.plural})")
            candidates = set(self.pending)
        else:
            obj: Resource | None = event.object
            if obj is None:
                return []
            key = (obj.metadata.namespace, obj.metadata.name)
            if event.type == "DELETED":
                self.latest.pop(key, None)
            elif self._follows(key, obj):
                self.latest[key] = obj
            candidates = {key} if self.synced and self.pending and key in self.pending else set()
        done = sorted(key for key in candidates if self._done(key))
        if self.pending is not None:
            self.pending.difference_update(done)
        return done

    def _follows(self, key: Key, obj: Resource) -> bool:
        if self.pending is not None:
            return key in self.pending
        return selectors.matches(self._selector, obj.metadata.labels)

    def _done(self, key: Key) -> bool:
        if self.goal.delete:
            return key not in self.latest
        obj = self.latest.get(key)
        return obj is not None and self.goal.met_by(obj)

    def line(self, key: Key) -> str:
        return f"{self.target.info.qualified}/{key[1]} {'deleted' if self.goal.delete else 'condition met'}"

    def missed(self) -> list[str]:
        plural = self.target.info.plural
        if self.pending is None:  # the listing itself did not finish in time
            return [f"timed out waiting for the condition on {plural}"]
        return [f"timed out waiting for the condition on {plural}/{name}" for _, name in sorted(self.pending)]


async def _follow(store: Store, tracker: Tracker, *, once: bool) -> None:
    info = tracker.target.info
    ns = tracker.namespace if info.namespaced else subjects.ALL
    async with contextlib.aclosing(store.watch(info.type, ns)) as events:
        async for event in events:
            for key in tracker.feed(event):
                print(tracker.line(key), flush=True)
            if tracker.finished or (once and tracker.synced):
                return


@run_async
async def wait(
    resources: Annotated[
        list[str] | None, typer.Argument(help="KIND/NAME..., KIND NAME..., or KIND with -l or --all.")
    ] = None,
    for_: Annotated[
        str, typer.Option("--for", help="delete, or condition=NAME[=true|false|unknown] (true by default).")
    ] = "",
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    selector: Selector = "",
    everything: Annotated[bool, typer.Option("--all", help="Every object of the kind.")] = False,
    within: Annotated[
        str,
        typer.Option("--timeout", help="How long to wait (30s, 5m, ...); 0 checks once, -1s: no limit."),
    ] = "30s",
) -> int:
    """Wait until objects meet a status condition, or are deleted."""
    if not for_:
        raise BadRequest(f"--for is required: {_FOR_USAGE}")
    goal = parse_goal(for_)
    limit = parse_timeout(within)
    targets = parse_targets(resources or [], selector=selector, everything=everything)
    if all_namespaces and any(t.names for t in targets):
        raise BadRequest("-A waits for objects chosen by -l SELECTOR or --all, not by name")
    if not goal.delete:
        for target in targets:
            if not has_conditions(target.info):
                raise BadRequest(f"{target.info.plural} have no status.conditions to wait for")
    ns = subjects.ALL if all_namespaces else namespace_or_default(namespace)
    trackers = [Tracker(target, goal, ns) for target in targets]
    async with session() as s:
        store = s.store
        try:
            async with asyncio.timeout(limit or None), asyncio.TaskGroup() as tasks:
                for tracker in trackers:
                    tasks.create_task(_follow(store, tracker, once=limit == 0))
        except TimeoutError:
            pass  # reported below, object by object
        except ExceptionGroup as group:  # one watch failed: report its error, not the group
            raise next((e for e in group.exceptions if isinstance(e, SteerError)), group) from None
    missed = [line for tracker in trackers for line in tracker.missed()]
    for line in missed:
        stderr.print(f"error: {line}", markup=False)
    return 1 if missed else 0
