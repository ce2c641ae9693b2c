"""The life of one container of a pod, as the kubelet runs it.

Pull (with ErrImagePull / ImagePullBackOff), start (StartError on a missing command), wait for the
exit, then restart per the pod's restartPolicy after the CrashLoopBackOff delay. Probes run
beside a running container; a failed liveness or startup probe kills it (and so restarts it).
Every change is written to the container's `ContainerStatus` and the pod worker is told, which
writes the pod status only when it changed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from bus.errors import SteerError
from bus.resources.pod import (
    Container,
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
)
from nodeagent.adoption import Adopted, recorded_exit
from nodeagent.backoff import ImagePullBackoff, RestartBackoff, crash_loop_back_off, image_pull_back_off
from nodeagent.podstatus import terminated_reason
from nodeagent.probes import ProbeKind, Prober, host_ports
from nodeagent.reaper import RETRY_CAP, RETRY_FIRST, dispose
from nodeagent.runtime import (
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ImageNeverPullError,
    ImagePullError,
    RuntimeFailure,
    StartError,
)

if TYPE_CHECKING:
    from nodeagent.worker import PodWorker

log = logging.getLogger(__name__)

# What a container that could not start "exits" with (Kubernetes reports 128 for StartError).
START_FAILURE_EXIT = 128
# How long ErrImagePull stays in the status before ImagePullBackOff replaces it.
ERR_IMAGE_PULL_SHOWN = 1.0


class ContainerConfigError(RuntimeFailure):
    """The container's configuration could not be made (Kubernetes: CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ContainerRun:
    """One container of the pod: what runs now, what ran before, and when it may run again."""

    spec: Container
    worker: PodWorker
    status: ContainerStatus = field(init=False)
    container_id: str = ""
    previous_id: str = ""
    attempt: int = -1  # the attempt running (or last run); the next start is attempt + 1
    started_mono: float = 0.0
    backoff: RestartBackoff = field(init=False)
    pull_backoff: ImagePullBackoff = field(init=False)
    finished: bool = False  # exited for good (restartPolicy says no more)
    adopted: ContainerInfo | None = None
    # Probe verdicts a previous agent reached for an adopted running container.
    carried: dict[ProbeKind, bool] = field(default_factory=dict)
    # The stored record of an adopted container's exit, when the previous agent wrote it.
    recorded: ContainerStateTerminated | None = None

    def __post_init__(self) -> None:
        policy = self.worker.ctx.backoff
        self.backoff = RestartBackoff(policy)
        self.pull_backoff = ImagePullBackoff(policy)
        self.status = ContainerStatus(
            name=self.spec.name,
            image=self.spec.image,
            state=ContainerState(waiting=ContainerStateWaiting(reason="ContainerCreating")),
            started=False,
        )

    # -- status changes

    def _set(self, state: ContainerState, *, ready: bool | None = None) -> None:
        self.status.state = state
        if ready is not None:
            self.status.ready = ready
        self.worker.changed()

    def waiting(self, reason: str, message: str = "") -> None:
        self._set(ContainerState(waiting=ContainerStateWaiting(reason=reason, message=message)), ready=False)

    # -- adoption

    def adopt(self, adopted: Adopted, stored: ContainerStatus | None) -> None:
        """Take over a container a previous agent started (see adoption.py): the runtime's facts
        about it, and `stored`, the stored status if it describes this very container."""
        info = self.adopted = adopted.current
        loop_now, wall_now = asyncio.get_running_loop().time(), _now()
        self.container_id = info.id
        self.previous_id = adopted.previous.id if adopted.previous is not None else ""
        self.attempt = info.attempt
        self.backoff.restore(info.restart_delay)
        self.status.container_id = f"{self.worker.ctx.runtime.name}://{info.id}"
        self.status.image_id = info.image_id
        seen_running = stored is not None and stored.state.running is not None
        # Each earlier attempt ended in a counted restart: the attempt is the count at its start.
        self.status.restart_count = stored.restart_count if stored and seen_running else info.attempt
        if stored is not None:
            self.status.last_state = stored.last_state
        elif adopted.previous is not None:
            self.status.last_state = ContainerState(terminated=self._terminated_before(adopted.previous))
        stored_start = stored.state.running.started_at if stored and stored.state.running else None
        started = stored_start or info.started_at or wall_now
        self.started_mono = loop_now - max(0.0, (wall_now - started).total_seconds())
        if info.status == "running":
            # What the previous agent's probes had found holds until they find otherwise.
            self.status.started = stored.started if stored else not self.spec.startup_probe
            ready = stored.ready if stored else False
            self.carried = {ProbeKind.STARTUP: bool(self.status.started), ProbeKind.READINESS: ready}
            self._set(ContainerState(running=ContainerStateRunning(started_at=started)), ready=ready)
        else:
            self.recorded = recorded_exit(stored)

    def _terminated_before(self, info: ContainerInfo) -> ContainerStateTerminated:
        """The termination record of an exited container, from the runtime's facts."""
        code = info.exit_code if info.exit_code is not None else 0
        return ContainerStateTerminated(
            exit_code=code,
            reason=terminated_reason(code, oom_killed=info.oom_killed),
            started_at=info.started_at,
            finished_at=info.finished_at,
            container_id=f"{self.worker.ctx.runtime.name}://{info.id}",
        )

    # -- the loop

    async def run(self) -> None:
        """Run (and restart) the container until the pod stops or the restart policy says no more."""
        worker = self.worker
        if self.container_id and self.status.state.running is not None:
            await self._supervise(adopted=True)
        elif self.container_id:
            self._exited_before_adoption()
        while not worker.stopping.is_set() and not self.finished:
            if not await self._wait_backoff():
                return
            image_id = await self._pull()
            if image_id is None or worker.stopping.is_set():
                continue
            if await self._start(image_id):
                if worker.stopping.is_set():
                    # The pod began stopping while this container started, too late for the
                    # worker to stop it: stop it here, or nothing ever would.
                    await self.stop(worker.stop_grace)
                await self._supervise(adopted=False)

    async def _wait_backoff(self) -> bool:
        """Sit out the restart back-off (CrashLoopBackOff); False if the pod stops meanwhile."""
        remaining = self.backoff.remaining(asyncio.get_running_loop().time())
        if remaining <= 0:
            return True
        self._set(
            ContainerState(
                waiting=crash_loop_back_off(remaining, container=self.spec.name, pod=self.worker.pod.metadata)
            ),
            ready=False,
        )
        return not await self.worker.sleep_unless_stopping(remaining)

    async def _pull(self) -> str | None:
        ctx, pod = self.worker.ctx, self.worker.pod
        try:
            image_id = await ctx.runtime.ensure_image(self.spec.image, self.spec.image_pull_policy)
        except (ImagePullError, ImageNeverPullError) as err:
            delay = self.pull_backoff.failed(asyncio.get_running_loop().time())
            self.waiting(err.reason, err.message)
            message = f'Failed to pull image "{self.spec.image}": {err.message}'
            await ctx.recorder.warning(pod, "Failed", message, field_path=self._path)
            # ErrImagePull shows for a moment, then ImagePullBackOff for the back-off delay.
            if await self.worker.sleep_unless_stopping(ERR_IMAGE_PULL_SHOWN):
                return None
            self._set(ContainerState(waiting=image_pull_back_off(self.spec.image)), ready=False)
            message = f'Back-off pulling image "{self.spec.image}"'
            await ctx.recorder.normal(pod, "BackOff", message, field_path=self._path)
            await self.worker.sleep_unless_stopping(delay)
            return None
        self.pull_backoff.succeeded()
        return image_id

    @property
    def _path(self) -> str:
        return f"spec.containers{{{self.spec.name}}}"

    async def _start(self, image_id: str) -> bool:
        """Start the next attempt; on failure, record it as an exit (and back off)."""
        ctx, pod = self.worker.ctx, self.worker.pod
        self.attempt += 1
        started_at = _now()
        try:
            spec = ContainerSpec(
                node=ctx.node,
                pod_uid=pod.metadata.uid,
                pod_namespace=pod.metadata.namespace,
                pod_name=pod.metadata.name,
                name=self.spec.name,
                image=self.spec.image,
                command=list(self.spec.command),
                args=list(self.spec.args),
                env=await self._environment(),
                working_dir=self.spec.working_dir,
                cpu_millis=self.worker.limit_cpu(self.spec),
                memory_bytes=self.worker.limit_memory(self.spec),
                image_pull_policy=self.spec.image_pull_policy,
                host_ip=ctx.address,
                ports=tuple(self.worker.bindings_of(self.spec.name)),
                attempt=self.attempt,
                restart_delay=self.backoff.delay,
                sandbox=self.worker.sandbox_id,
            )
            container_id = await ctx.runtime.start(spec)
        except (StartError, RuntimeFailure) as err:
            await ctx.recorder.warning(pod, "Failed", f"Error: {err.message}", field_path=self._path)
            self._record_exit(
                START_FAILURE_EXIT, reason=err.reason, message=err.message, started_at=started_at
            )
            return False
        await self._retire_previous(container_id)
        self.status.image_id = image_id
        self.status.container_id = f"{ctx.runtime.name}://{container_id}"
        self.started_mono = asyncio.get_running_loop().time()
        self.status.started = not self.spec.startup_probe
        self._set(ContainerState(running=ContainerStateRunning(started_at=started_at)), ready=False)
        await ctx.recorder.normal(
            pod, "Started", f"Started container {self.spec.name}", field_path=self._path
        )
        return True

    async def _environment(self) -> dict[str, str]:
        try:
            return await self.worker.environment(self.spec)
        except SteerError as err:  # as the kubelet: no container without its discovery variables
            raise ContainerConfigError(
                f"cannot read the Services of the pod's namespace: {err.message}"
            ) from None

    async def _retire_previous(self, container_id: str) -> None:
        """Keep the last exited container (for `logs --previous`); remove the one before it."""
        old, self.previous_id, self.container_id = self.previous_id, self.container_id, container_id
        if old:
            await self.worker.discard([old])

    async def _supervise(self, *, adopted: bool) -> None:
        """Probe the running container and wait for it to exit; then record the exit."""
        ctx = self.worker.ctx
        prober = Prober(
            self.spec,
            container_id=self.container_id,
            runtime=ctx.runtime,
            host=self.worker.pod_ip,
            ports=host_ports(self.worker.bindings_of(self.spec.name)),
            ran_for=asyncio.get_running_loop().time() - self.started_mono if adopted else 0.0,
            carried=self.carried if adopted else {},
        )
        killed_because = ""

        def on_probe(kind: ProbeKind, ok: bool, message: str) -> None:
            nonlocal killed_because
            if kind is ProbeKind.READINESS:
                self.status.ready = ok
                self.worker.changed()
            elif kind is ProbeKind.STARTUP and ok:
                self.status.started = True
                self.worker.changed()
            if not ok:
                self.worker.spawn(
                    ctx.recorder.warning(self.worker.pod, "Unhealthy", message, field_path=self._path)
                )
            if not ok and kind is not ProbeKind.READINESS and not killed_because:
                killed_because = f"failed {kind.value.lower()} probe"
                self.worker.spawn(
                    self._kill(f"Container {self.spec.name} {killed_because}, will be restarted")
                )

        if not self.spec.readiness_probe:
            self.status.ready = True
            self.worker.changed()
        async with asyncio.TaskGroup() as group:
            probing = group.create_task(prober.run(on_probe))
            try:
                exit_code = await ctx.runtime.wait(self.container_id)
            finally:
                probing.cancel()
        info = await self._inspect()
        reason = terminated_reason(exit_code, oom_killed=info is not None and info.oom_killed)
        started = info.started_at if info is not None else None
        self._record_exit(exit_code, reason=reason, message="", started_at=started)

    async def _inspect(self) -> ContainerInfo | None:
        try:
            return await self.worker.ctx.runtime.inspect(self.container_id)
        except RuntimeFailure:
            return None

    async def _kill(self, message: str) -> None:
        """Stop the container to restart it (a failed probe); tried again while the runtime fails."""
        pod = self.worker.pod
        await self.worker.ctx.recorder.normal(pod, "Killing", message, field_path=self._path)
        killing, delay = self.container_id, RETRY_FIRST
        while not await self.stop(float(pod.spec.termination_grace_period_seconds)):
            if await self.worker.sleep_unless_stopping(delay) or self.container_id != killing:
                return  # the pod's termination stops it now, or it has exited meanwhile
            delay = min(delay * 2, RETRY_CAP)

    def _exited_before_adoption(self) -> None:
        """An adopted container that exited while no agent watched: its exit is recorded (once:
        the previous agent may have done it), at the time it happened."""
        info = self.adopted
        assert info is not None
        terminated = self.recorded
        if terminated is None:
            terminated = msgspec.structs.replace(
                self._terminated_before(info), message="exited while the node agent was away"
            )
        ended = terminated.finished_at or _now()
        ago = max(0.0, (_now() - ended).total_seconds())
        self._exited(terminated, at=asyncio.get_running_loop().time() - ago, announce=self.recorded is None)

    def _record_exit(self, exit_code: int, *, reason: str, message: str, started_at: datetime | None) -> None:
        """The container stopped just now."""
        terminated = ContainerStateTerminated(
            exit_code=exit_code,
            reason=reason,
            message=message,
            started_at=started_at,
            finished_at=_now(),
            container_id=self.status.container_id,
        )
        self._exited(terminated, at=asyncio.get_running_loop().time(), announce=True)

    def _exited(self, terminated: ContainerStateTerminated, *, at: float, announce: bool) -> None:
        """The container stopped at `at` (loop time): lastState, restart decision, back-off;
        a BackOff event if `announce`."""
        self.status.ready = False
        policy = self.worker.pod.spec.restart_policy
        restart = not self.worker.stopping.is_set() and (
            policy == "Always" or (policy == "OnFailure" and terminated.exit_code != 0)
        )
        if not restart:
            self.finished = True
            self._set(ContainerState(terminated=terminated), ready=False)
            return
        self.status.last_state = ContainerState(terminated=terminated)
        self.status.restart_count += 1
        delay = self.backoff.delay_after(exit_at=at, started_at=self.started_mono or at)
        if delay == 0:  # restarted at once: no back-off to report
            self._set(ContainerState(terminated=terminated), ready=False)
            return
        self._set(
            ContainerState(
                waiting=crash_loop_back_off(delay, container=self.spec.name, pod=self.worker.pod.metadata)
            ),
            ready=False,
        )
        if announce:
            self.worker.spawn(
                self.worker.ctx.recorder.warning(
                    self.worker.pod,
                    "BackOff",
                    f"Back-off restarting failed container {self.spec.name}",
                    field_path=self._path,
                )
            )

    async def stop(self, grace: float) -> bool:
        """Stop the running container; False if the runtime failed to (for the caller to retry)."""
        if not self.container_id or self.status.state.running is None:
            return True
        try:
            await self.worker.ctx.runtime.stop(self.container_id, grace)
        except ContainerNotFound:
            return True
        except RuntimeFailure as failure:
            log.warning(
                "pod %s: cannot stop container %s: %s", self.worker.key, self.spec.name, failure.message
            )
            return False
        return True

    @property
    def container_ids(self) -> list[str]:
        """The current container and the previous one kept for `logs --previous`."""
        return [cid for cid in (self.container_id, self.previous_id) if cid]

    async def remove(self) -> None:
        """Remove the (stopped) containers, trying again while the runtime fails."""
        for container_id in self.container_ids:
            await dispose(self.worker.ctx.runtime, container_id, 0)
