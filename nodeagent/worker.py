"""One pod on this node: its containers, its status, and its end.

The worker owns everything about its pod in one TaskGroup: a `ContainerRun` loop per container,
their probes, and one status writer (statuswriter.py) that writes the pod status only when it
changed, never two writes at once, each a compare-and-set. When the pod gets a
deletionTimestamp, the worker stops the containers (SIGTERM, the grace period, SIGKILL; again
while the runtime fails), deletes the pod for good, and has the containers removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bus.client import Client
from bus.errors import NotFound, SteerError, Timeout, Unavailable
from bus.quantity import cpu_millis, memory_bytes
from bus.recorder import Recorder
from bus.resources import Pod, Service
from bus.resources.pod import Container
from nodeagent.adoption import sort_out, stored_status
from nodeagent.backoff import BackoffPolicy
from nodeagent.containers import ContainerRun
from nodeagent.discovery import service_env
from nodeagent.network.hostports import HostPort, HostPorts
from nodeagent.network.podnetwork import PodNetwork
from nodeagent.ports import PortAllocator, PortInUse, WantedPort, port_env
from nodeagent.reaper import RETRY_CAP, RETRY_FIRST, ContainerReaper, dispose
from nodeagent.runtime import ContainerInfo, PortBinding, Runtime, RuntimeFailure, Sandbox
from nodeagent.sandboxes import PodSandbox
from nodeagent.statuswriter import StatusWriter

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What every pod worker of a node shares."""

    node: str
    address: str
    client: Client
    runtime: Runtime
    ports: PortAllocator
    recorder: Recorder
    backoff: BackoffPolicy
    # Who removes a finished pod's containers, later; None: the worker, at once.
    reaper: ContainerReaper | None = None
    # Each namespace's Services as last listed, for starts while the API does not answer.
    services_listed: dict[str, list[Service]] = field(default_factory=dict)
    # The node's pod network; None when the node runs every pod on the host's network.
    network: PodNetwork | None = None
    network_ready: asyncio.Event = field(default_factory=asyncio.Event)
    host_ports: HostPorts | None = None  # hostPorts of pods on the pod network


class PodWorker:
    def __init__(
        self, ctx: WorkerContext, pod: Pod, adopted: list[ContainerInfo], sandbox: Sandbox | None = None
    ) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid = pod.metadata.uid
        self.namespace = pod.metadata.namespace
        self.name = pod.metadata.name
        self.key = f"{self.namespace}/{self.name}"
        self.runs = {c.name: ContainerRun(c, self) for c in pod.spec.containers}
        self.bindings: list[tuple[str, PortBinding]] = []
        self.stopping = asyncio.Event()
        self.stop_grace = 0.0  # the grace period the containers are stopped with, once stopping
        self.wake = asyncio.Event()
        self.removed = False
        self.failure: tuple[str, str] | None = None  # (reason, message) of a pod that cannot run here
        self.status_writer = StatusWriter(self)
        # Its own namespace and address, unless the node or the pod uses the host's network.
        self.sandbox: PodSandbox | None = None
        if ctx.network is not None and not pod.spec.host_network:
            self.sandbox = PodSandbox(self, ctx.network, ctx.network_ready)
            if sandbox is not None:
                self.sandbox.adopt(sandbox)
        self._leftovers = sort_out(self.runs, adopted)
        # Taken back at once, before any other worker can allocate: the ports are bound (or
        # about to be again), and no other pod may be given them.
        ctx.ports.adopt(self.uid, self._leftovers.held_ports())
        self._tasks: asyncio.TaskGroup | None = None

    # -- told by the agent

    def update(self, pod: Pod) -> None:
        """A newer version of the pod (older ones, from a late feed message, are ignored)."""
        if _revision(pod) >= _revision(self.pod):
            self.pod = pod
            self.wake.set()
            self.status_writer.observed(pod)

    def gone(self) -> None:
        self.removed = True
        self.wake.set()

    # -- used by the container runs

    def changed(self) -> None:
        self.status_writer.dirty.set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Work that must not block the caller, owned by this pod's task group."""
        assert self._tasks is not None
        self._tasks.create_task(coro)

    async def sleep_unless_stopping(self, seconds: float) -> bool:
        """Sleep; True if the pod started stopping meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        return self.stopping.is_set()

    @property
    def pod_ip(self) -> str:
        """The pod's address: its own on the pod network ("" until it has one), else the node's."""
        return self.sandbox.address if self.sandbox is not None else self.ctx.address

    @property
    def sandbox_id(self) -> str:
        found = self.sandbox.sandbox if self.sandbox is not None else None
        return found.id if found is not None else ""

    def bindings_of(self, container: str) -> list[PortBinding]:
        return [b for name, b in self.bindings if name == container]

    async def environment(self, container: Container) -> dict[str, str]:
        """The container's env, over where it must listen and who it is, over the discovery
        variables of the namespace's Services (SteerError if they cannot be read)."""
        env = {
            # A node on the pod network forwards each ClusterIP in its kernel (for its pods and
            # its own processes, hostNetwork pods too); on the host network the userspace proxy
            # serves each Service on the node's address.
            **service_env(await self._services(), self.ctx.address, cluster_ips=self.ctx.network is not None),
            "POD_NAME": self.name,
            "POD_NAMESPACE": self.namespace,
            "POD_UID": self.uid,
            "NODE_NAME": self.ctx.node,
            "HOST_IP": self.ctx.address,
            **port_env(self.bindings_of(container.name)),
        }
        env.update({var.name: var.value for var in container.env})
        return env

    async def _services(self) -> list[Service]:
        """The namespace's Services, read live: a Service created just before the pod always
        counts. While the API does not answer, the ones last listed (as the kubelet restarts
        containers from its informer's cache): a container that exits during an outage of the
        API is restarted, not held back by CreateContainerConfigError until the API returns."""
        try:
            services = await self.ctx.client.list(Service, self.namespace)
        except (Unavailable, Timeout) as err:
            known = self.ctx.services_listed.get(self.namespace)
            if known is None:
                raise
            log.info("pod %s: %s; using the Services listed before", self.key, err.message)
            return known
        self.ctx.services_listed[self.namespace] = services
        return services

    def limit_cpu(self, container: Container) -> int | None:
        value = container.resources.limits.get("cpu")
        return cpu_millis(value) if value else None

    def limit_memory(self, container: Container) -> int | None:
        value = container.resources.limits.get("memory")
        return memory_bytes(value) if value else None

    def container_id(self, container: str, *, previous: bool = False) -> str:
        run = self.runs.get(container or next(iter(self.runs), ""))
        if run is None:
            raise NotFound(f'container "{container}" is not in pod "{self.name}"')
        found = run.previous_id if previous else run.container_id
        if not found:
            what = "previous terminated container" if previous else "container"
            raise NotFound(f'{what} "{run.spec.name}" in pod "{self.name}" not found')
        return found

    # -- the pod's life

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            writer = tasks.create_task(self.status_writer.run())
            # Adopt even a pod being deleted (evicted while this agent was away): its containers
            # still run, and must be stopped and removed before the deletion is finished.
            await self._adopt()
            if self.pod.metadata.deletion_timestamp is None and not self.removed and await self._prepare():
                for run in self.runs.values():
                    tasks.create_task(run.run())
            await self._until_stop()
            await self._terminate()
            writer.cancel()
        await self._finish()

    async def _adopt(self) -> None:
        """Take over what a previous agent left of this pod (adoption.py); remove the rest
        before anything starts (a container created but never started holds the name of the
        attempt that starts next)."""
        for name, adopted in self._leftovers.adopted.items():
            run = self.runs[name]
            stored = stored_status(self.pod.status, name, f"{self.ctx.runtime.name}://{adopted.current.id}")
            run.adopt(adopted, stored)
            log.info("pod %s: adopted container %s (%s)", self.key, name, adopted.current.status)
        await self.discard([info.id for info in self._leftovers.stale])

    async def discard(self, container_ids: list[str]) -> None:
        """Remove containers the pod no longer needs, now; one the runtime fails to remove is
        left to the reaper to try again later (without one, to a task of the pod's that retries)."""
        for container_id in container_ids:
            try:
                await self.ctx.runtime.remove(container_id)
            except RuntimeFailure as failure:
                log.warning("pod %s: cannot remove container %s: %s", self.key, container_id[:12], failure)
                if self.ctx.reaper is not None:
                    self.ctx.reaper.later([container_id])
                else:
                    self.spawn(dispose(self.ctx.runtime, container_id, 0))

    async def _prepare(self) -> bool:
        """What the containers need before they start: their ports, and on the pod network the
        sandbox and address. False if the pod cannot run or stopped meanwhile."""
        if self.sandbox is None:
            return self._take_ports()
        self.bindings = [
            (container.name, PortBinding(port.container_port, port.container_port, port.name, port.protocol))
            for container in self.pod.spec.containers
            for port in container.ports
        ]
        published = [port for c in self.pod.spec.containers for port in c.ports if port.host_port]
        wanted = [WantedPort(p.name, p.container_port, p.host_port) for p in published]
        try:
            self.ctx.ports.allocate(self.uid, wanted)  # a hostPort is the node's: one pod each
        except PortInUse as err:
            return self._cannot_run("HostPortConflict", "FailedHostPort", str(err))
        if not await self.sandbox.establish():
            return False
        if published and self.ctx.host_ports is not None:
            ports = [
                HostPort(p.protocol.lower(), int(p.host_port or 0), self.sandbox.address, p.container_port)
                for p in published
            ]
            self.ctx.host_ports.publish(self.uid, ports)
        return True

    def _cannot_run(self, reason: str, event: str, message: str) -> bool:
        self.failure = (reason, message)
        self.spawn(self.ctx.recorder.warning(self.pod, event, message))
        self.changed()
        return False

    def _take_ports(self) -> bool:
        """Allocate the pod's host ports; after an agent restart, the same ones again."""
        known = {(m.container, m.container_port): m.host_port for m in self.pod.status.host_ports}
        for container in self.pod.spec.containers:
            for held in self._leftovers.ports_of(container.name):
                known[(container.name, held.container_port)] = held.host_port
        wanted = []
        owners = []
        for container in self.pod.spec.containers:
            for port in container.ports:
                before = known.get((container.name, port.container_port))
                wanted.append(WantedPort(port.name, port.container_port, port.host_port, before))
                owners.append(container.name)
        try:
            bindings = self.ctx.ports.allocate(self.uid, wanted)
        except PortInUse as err:
            return self._cannot_run("HostPortConflict", "FailedHostPort", str(err))
        self.bindings = list(zip(owners, bindings, strict=True))
        return True

    async def _until_stop(self) -> None:
        while not self.removed and self.pod.metadata.deletion_timestamp is None:
            self.wake.clear()
            await self.wake.wait()

    async def _terminate(self) -> None:
        """Stop every container: SIGTERM, the grace period, then SIGKILL."""
        grace = self.pod.metadata.deletion_grace_period_seconds
        if grace is None:
            grace = 0 if self.removed else self.pod.spec.termination_grace_period_seconds
        running = [run for run in self.runs.values() if run.status.state.running is not None]
        for run in running:
            self.spawn(
                self.ctx.recorder.normal(
                    self.pod, "Killing", f"Stopping container {run.spec.name}", field_path=run_path(run)
                )
            )
        self.stop_grace = float(grace)
        self.stopping.set()
        # As the kubelet: a container the runtime failed to stop is stopped again, with back-off,
        # and the pod stays (Terminating) until every container has stopped.
        pending, delay = list(self.runs.values()), RETRY_FIRST
        while True:
            async with asyncio.TaskGroup() as group:
                stops = [(run, group.create_task(run.stop(self.stop_grace))) for run in pending]
            pending = [run for run, stopped in stops if not stopped.result()]
            if not pending:
                return
            if delay == RETRY_FIRST:
                names = ", ".join(run.spec.name for run in pending)
                self.spawn(
                    self.ctx.recorder.warning(
                        self.pod, "FailedKillPod", f"error killing pod: cannot stop {names}; retrying"
                    )
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)

    async def _finish(self) -> None:
        """Containers are stopped: free what they held, delete the pod for good, and leave the
        containers to the reaper (or remove them now: after the deletion, which, as in
        Kubernetes, waits for the containers to stop but not to be removed)."""
        if self.ctx.reaper is not None:
            self.ctx.reaper.later(cid for run in self.runs.values() for cid in run.container_ids)
        self.ctx.ports.release(self.uid)
        if self.ctx.host_ports is not None:
            self.ctx.host_ports.withdraw(self.uid)
        if self.sandbox is not None:
            await self.sandbox.release()
        if not self.removed:
            await self._delete()
        if self.ctx.reaper is None:
            async with asyncio.TaskGroup() as group:
                for run in self.runs.values():
                    group.create_task(run.remove())

    async def _delete(self) -> None:
        try:
            await self.ctx.client.delete(Pod, self.name, self.namespace, grace_period_seconds=0)
        except NotFound:
            return  # already gone: what we wanted
        except SteerError as err:
            log.warning("pod %s: could not finish deletion: %s (the next resync retries)", self.key, err)


def run_path(run: ContainerRun) -> str:
    return f"spec.containers{{{run.spec.name}}}"


def _revision(pod: Pod) -> int:
    try:
        return int(pod.metadata.resource_version)
    except ValueError:
        return 0
