"""Stand-in node agents for controller tests that run no agent: pods become Running and Ready."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from bus.client import Client
from bus.errors import Conflict, NotFound
from bus.events import now
from bus.resources import Pod
from bus.resources.pod import PodCondition, PodStatus
from bus.store import Store


async def mark_pods_ready(
    client: Client, store: Store, namespace: str, *, unless: Callable[[Pod], bool] = lambda pod: False
) -> None:
    """Until cancelled: every live pod of the namespace not yet Running (and not `unless`) is
    made Running and Ready, as a node agent would once its containers run."""
    async with contextlib.aclosing(store.watch(Pod, namespace)) as events:
        async for event in events:
            pod = event.object
            if event.type in ("SYNCED", "DELETED") or pod is None or pod.metadata.deletion_timestamp:
                continue
            if pod.status.phase == "Running" or unless(pod):
                continue
            ready = PodCondition(type="Ready", status="True", last_transition_time=now())
            pod.status = PodStatus(phase="Running", conditions=[ready])
            # Compare-and-set: a pod changed meanwhile (adopted, bound) comes round again.
            with contextlib.suppress(NotFound, Conflict):
                await client.update_status(pod)
