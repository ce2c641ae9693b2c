"""A writer that creates pods through the API as fast as it can, and remembers every answer.

For fault tests and benchmarks: while it runs, a server of the cluster is killed; afterwards its
record says which creates got a success reply (name, uid, when) and which failed (with what),
to be checked against the store. Pods are made with `generateName`, so that a create stored
twice would show as two pods with one uid (the API names a pod after the uid its client chose).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bus.client import Client
from bus.errors import SteerError
from bus.meta import ObjectMeta
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec

LABELS = {"load": "writes"}


@dataclass(frozen=True)
class Created:
    name: str
    uid: str
    sent: float  # time.monotonic()
    answered: float


@dataclass(frozen=True)
class Failed:
    error: SteerError
    sent: float
    answered: float


def pod(prefix: str = "w-") -> Pod:
    container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
    meta = ObjectMeta(generate_name=prefix, labels=dict(LABELS))
    return Pod(metadata=meta, spec=PodSpec(containers=[container]))


@dataclass
class WriteLoad:
    client: Client
    namespace: str
    total: int = 1000
    concurrency: int = 8
    created: list[Created] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def run(self) -> None:
        """Send `total` creates, `concurrency` at a time, until each has its answer."""
        remaining = iter(range(self.total))

        async def writer() -> None:
            for _ in remaining:
                obj = pod()
                obj.metadata.namespace = self.namespace
                sent = time.monotonic()
                try:
                    stored = await self.client.create(obj)
                except SteerError as err:
                    self.failed.append(Failed(err, sent, time.monotonic()))
                else:
                    meta = stored.metadata
                    self.created.append(Created(meta.name, meta.uid, sent, time.monotonic()))
                async with self._progress:
                    self._progress.notify_all()

        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.concurrency):
                tasks.create_task(writer())

    async def answered(self, count: int) -> None:
        """Until `count` creates have their answer."""
        async with self._progress:
            await self._progress.wait_for(lambda: len(self.created) + len(self.failed) >= count)

    def latencies(self) -> list[float]:
        return sorted(c.answered - c.sent for c in self.created)

    def window_after(self, moment: float) -> float:
        """The longest time without a successful answer from `moment` (a kill) on: how long the
        writes were unavailable to clients that keep sending."""
        answers = sorted(c.answered for c in self.created if c.answered >= moment)
        if not answers:
            return float("inf")
        return max(later - earlier for earlier, later in zip([moment, *answers], answers, strict=False))

    def stalled_over(self, moment: float) -> float:
        """The longest a create in flight at `moment` took (retries included)."""
        spans = [c.answered - c.sent for c in self.created if c.sent <= moment <= c.answered]
        spans += [f.answered - f.sent for f in self.failed if f.sent <= moment <= f.answered]
        return max(spans, default=0.0)
