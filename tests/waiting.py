"""Waiting for conditions the way the cluster reports them: through watches, never by sleeping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from bus.meta import Resource
from bus.store import Store

R = TypeVar("R", bound=Resource)
T = TypeVar("T")


async def wait_for(
    store: Store,
    cls: type[R],
    namespace: str,
    name: str,
    predicate: Callable[[R], bool],
    *,
    within: float = 60.0,
) -> R:
    """The first version of the object (from the watch) that satisfies `predicate`."""
    last: R | None = None
    try:
        async with asyncio.timeout(within):
            async with contextlib.aclosing(store.watch(cls, namespace)) as events:
                async for event in events:
                    obj = event.object
                    if obj is None or obj.metadata.name != name or event.type == "DELETED":
                        continue
                    last = obj
                    if predicate(obj):
                        return obj
    except TimeoutError:
        raise AssertionError(
            f"{cls.__name__} {namespace}/{name} never met the condition; last seen: {last}"
        ) from None
    raise AssertionError("the watch ended")


async def wait_gone(
    store: Store, cls: type[R], namespace: str, name: str, *, within: float = 60.0
) -> R | None:
    """Wait until the object is deleted; its final state (if it existed)."""
    seen = False
    try:
        async with asyncio.timeout(within):
            async with contextlib.aclosing(store.watch(cls, namespace)) as events:
                async for event in events:
                    if event.type == "SYNCED" and not seen:
                        return None
                    if event.object is None or event.object.metadata.name != name:
                        continue
                    seen = True
                    if event.type == "DELETED":
                        return event.object
    except TimeoutError:
        raise AssertionError(
            f"{cls.__name__} {namespace}/{name} was not deleted within {within:g}s"
        ) from None
    raise AssertionError("the watch ended")


async def wait_for_all(
    store: Store,
    cls: type[R],
    namespace: str,
    predicate: Callable[[list[R]], bool],
    *,
    within: float = 60.0,
) -> list[R]:
    """The namespace's objects of a kind (deleted ones left out) once `predicate` holds for them."""
    items: dict[str, R] = {}
    synced = False
    try:
        async with asyncio.timeout(within):
            async with contextlib.aclosing(store.watch(cls, namespace)) as events:
                async for event in events:
                    synced = synced or event.type == "SYNCED"
                    obj = event.object
                    if obj is not None:
                        if event.type == "DELETED":
                            items.pop(obj.metadata.name, None)
                        else:
                            items[obj.metadata.name] = obj
                    if synced and predicate(list(items.values())):
                        return list(items.values())
    except TimeoutError:
        names = sorted(items)
        raise AssertionError(
            f"{cls.__name__}s in {namespace!r} never met the condition; last: {names}"
        ) from None
    raise AssertionError("the watch ended")


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = 30.0, every: float = 0.1
) -> T:
    """The first truthy result of `check`, asked every `every` seconds: for facts that no watch
    announces (the kernel's links, files, a log), and never longer than `within`."""
    async with asyncio.timeout(within):
        while True:
            if found := await check():
                return found
            await asyncio.sleep(every)


async def logged(log: Path, text: str, *, times: int = 1, within: float = 60.0) -> None:
    """Until `text` stands `times` times in a process's log (a restarted agent's second "ready")."""

    async def often_enough() -> bool:
        content = await asyncio.to_thread(log.read_text, errors="replace")
        return content.count(text) >= times

    await eventually(often_enough, within=within)
