"""`steer cordon`, `steer uncordon` and `steer drain`: take a node out of service, and back."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Annotated

import typer

from bus import subjects
from bus.client import Client
from bus.errors import NotFound
from bus.resources import Node, Pod
from bus.store import Store
from cli.durations import parse_duration
from cli.errors import fail, run_async, stderr
from cli.session import session

NodeName = Annotated[str, typer.Argument(help="Node name.")]
Force = Annotated[bool, typer.Option("--force", help="Also delete pods that no controller will replace.")]
GracePeriod = Annotated[
    int,
    typer.Option("--grace-period", help="Seconds each pod gets to stop (-1: the pod's own)."),
]
DrainTimeout = Annotated[
    str, typer.Option("--timeout", help="How long to wait for the pods to go, e.g. 120s or 5m (0: forever).")
]


async def _set_unschedulable(client: Client, name: str, value: bool) -> str:
    before = await client.get(Node, name, "")
    if before.spec.unschedulable == value:
        return f"node/{before.metadata.name} already {'cordoned' if value else 'uncordoned'}"
    await client.patch(Node, before.metadata.name, {"spec": {"unschedulable": value or None}}, "")
    return f"node/{before.metadata.name} {'cordoned' if value else 'uncordoned'}"


@run_async
async def cordon(node: NodeName) -> int:
    """Mark a node unschedulable: new pods are not placed there (running ones stay)."""
    async with session() as s:
        print(await _set_unschedulable(s.client, node.removeprefix("node/"), True))
    return 0


@run_async
async def uncordon(node: NodeName) -> int:
    """Mark a node schedulable again."""
    async with session() as s:
        print(await _set_unschedulable(s.client, node.removeprefix("node/"), False))
    return 0


@run_async
async def drain(
    node: NodeName, force: Force = False, grace_period: GracePeriod = -1, drain_timeout: DrainTimeout = "120s"
) -> int:
    """Cordon a node, evict every pod on it, and wait until they are gone (their controllers
    replace them elsewhere)."""
    try:
        limit = parse_duration(drain_timeout)
    except ValueError as err:
        raise fail(f"--timeout: {err}", 2) from None
    if grace_period < -1:
        raise fail("--grace-period must be -1 (each pod's own) or a number of seconds", 2)
    name = node.removeprefix("node/")
    async with session() as s:
        print(await _set_unschedulable(s.client, name, True), flush=True)
        pods = await s.client.list(Pod, subjects.ALL, field_selector=f"spec.nodeName={name}")
        unmanaged = [_path(p) for p in pods if not any(r.controller for r in p.metadata.owner_references)]
        if unmanaged and not force:
            stderr.print(
                f'error: unable to drain node "{name}": cannot delete pods that declare no controller, '
                f"nothing would replace them (use --force to override): {', '.join(unmanaged)}",
                markup=False,
            )
            return 1
        if unmanaged:
            stderr.print(f"Warning: deleting pods that declare no controller: {', '.join(unmanaged)}")
        for pod in pods:
            await _evict(s.client, pod, grace_period)
        left = await _wait_gone(s.store, pods, limit) if pods else []
    if left:
        stderr.print(
            f'error: unable to drain node "{name}": pods still there after {drain_timeout}: '
            + ", ".join(_path(p) for p in left),
            markup=False,
        )
        return 1
    print(f"node/{name} drained")
    return 0


def _path(pod: Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


async def _evict(client: Client, pod: Pod, grace_period: int) -> None:
    stderr.print(f"evicting pod {_path(pod)}", markup=False)
    grace = None if grace_period < 0 else grace_period
    with contextlib.suppress(NotFound):  # gone already: what we wanted
        await client.delete(Pod, pod.metadata.name, pod.metadata.namespace, grace_period_seconds=grace)


async def _wait_gone(store: Store, pods: list[Pod], limit: timedelta) -> list[Pod]:
    """Follow the pods until the store no longer has them (their agent stopped them); those left
    when `limit` runs out (0: no limit)."""
    waiting = {p.metadata.uid: p for p in pods}
    listed: set[str] = set()
    synced = False

    def gone(uid: str) -> None:
        pod = waiting.pop(uid, None)
        if pod is not None:
            print(f"pod/{pod.metadata.name} evicted", flush=True)

    with contextlib.suppress(TimeoutError):  # time is up: the caller reports who is left
        async with asyncio.timeout(limit.total_seconds() or None):
            async with contextlib.aclosing(store.watch(Pod, subjects.ALL)) as events:
                async for event in events:
                    obj = event.object
                    if event.type == "SYNCED" and not synced:
                        synced = True
                        for uid in [u for u in waiting if u not in listed]:
                            gone(uid)  # deleted before the watch began
                    elif obj is not None and obj.metadata.uid in waiting:
                        if event.type == "DELETED":
                            gone(obj.metadata.uid)
                        elif not synced:
                            listed.add(obj.metadata.uid)
                    if synced and not waiting:
                        break
    return list(waiting.values())
