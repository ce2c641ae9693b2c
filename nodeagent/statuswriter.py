"""Writing one pod's status, as the kubelet's status manager does.

The status is written only when it changed, one write at a time, and every write compares and
sets: it carries the pod's resourceVersion as the worker last saw it. A Conflict means someone
wrote the pod since (a label, a deletion, the node lifecycle controller marking it not ready):
the pod is read again, handed to the worker (which may have something new to do, and notices a
readiness it did not write), and the status computed again is written on that version. A writer
that gave up on a Conflict would leave the pod's status frozen for the rest of its life.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec

from bus.errors import Conflict, NotFound, SteerError
from bus.events import now
from bus.meta import is_true
from bus.resources import Pod
from bus.resources.pod import HostPortMapping, PodStatus
from nodeagent import podstatus

if TYPE_CHECKING:
    from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

RETRY_FIRST = 0.1  # seconds before writing again after a failure (or a second Conflict in a row)
RETRY_CAP = 2.0  # an agent writes again within 2 s of the API's return


class StatusWriter:
    def __init__(self, worker: PodWorker) -> None:
        self.worker = worker
        self.dirty = asyncio.Event()
        pod = worker.pod
        # What the store holds as ours: nothing to write while the status computes the same.
        self.written: PodStatus | None = pod.status if pod.status.container_statuses else None

    def observed(self, pod: Pod) -> None:
        """A newer version of the pod. A stored readiness other than the one we wrote is someone
        else's (the node lifecycle controller marks the pods of a silent node not ready): ours is
        written again."""
        if self.written is not None and is_true(pod.status.conditions) != is_true(self.written.conditions):
            self.written = None
            self.dirty.set()

    def compute(self) -> PodStatus:
        worker = self.worker
        pod = worker.pod
        statuses = [msgspec.structs.replace(worker.runs[c.name].status) for c in pod.spec.containers]
        terminating = worker.stopping.is_set() or pod.metadata.deletion_timestamp is not None
        status = podstatus.assemble(
            pod.spec,
            statuses,
            previous=self.written or pod.status,
            now=now(),
            terminating=terminating,
            terminal=worker.stopping.is_set(),
            host_ip=worker.ctx.address,
            pod_ip=worker.pod_ip,
            reason=worker.failure[0] if worker.failure else "",
            message=worker.failure[1] if worker.failure else "",
            failed=worker.failure is not None,
        )
        status.host_ports = [
            HostPortMapping(
                container=owner,
                container_port=b.container_port,
                host_port=b.host_port,
                name=b.name,
                protocol="UDP" if b.protocol == "UDP" else "TCP",
            )
            for owner, b in worker.bindings
        ]
        return status

    async def run(self) -> None:
        """Write the status whenever it changed, until cancelled or the pod is gone."""
        worker = self.worker
        self.dirty.set()
        pause = 0.0  # after a failure, or a Conflict right after another
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            status = self.compute()
            if self.written is not None and not podstatus.changed(self.written, status):
                continue
            pod = Pod(metadata=worker.pod.metadata, spec=worker.pod.spec, status=status)
            try:
                stored = await worker.ctx.client.update_status(pod)
            except NotFound:
                return  # the pod is gone; the agent will tell us
            except Conflict:
                if not await self._read_again(pause):
                    return
                pause = min(max(pause * 2, RETRY_FIRST), RETRY_CAP)
                self.dirty.set()
                continue
            except SteerError as err:
                pause = min(max(pause * 2, RETRY_FIRST), RETRY_CAP)
                log.warning("pod %s: status write failed: %s; again in %gs", worker.key, err, pause)
                await asyncio.sleep(pause)
                self.dirty.set()
                continue
            pause = 0.0
            self.written = status
            worker.update(stored)

    async def _read_again(self, pause: float) -> bool:
        """After a Conflict: the pod as stored now, to the worker; False if it is gone (or is
        another pod of the same name)."""
        worker = self.worker
        await asyncio.sleep(pause)
        try:
            current = await worker.ctx.client.get(Pod, worker.name, worker.namespace)
        except NotFound:
            return False
        except SteerError as err:
            log.warning("pod %s: cannot read it again after a conflict: %s", worker.key, err)
            return True  # the write is tried again, and meets the Conflict again if it must
        if current.metadata.uid != worker.uid:
            return False
        worker.update(current)
        return True
