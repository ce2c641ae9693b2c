"""The Runtime protocol: what the node agent needs from whatever runs containers.

Three implementations stand behind it: `docker` (a real Docker engine through aiodocker),
`process` (plain host processes; the image is ignored) and `fake` (hollow containers in memory,
for scale tests and benchmarks). One contract test suite runs against each.

Every container a runtime starts carries the labels of bus/containerlabels.py, so a restarted
agent finds (adopts) its own containers, and several agents sharing one engine never touch each
other's. The labels also hold what the agent decided for the container and keeps nowhere else:
its attempt (the restart count, as the kubelet's `restartCount` annotation), its host ports,
and the restart back-off in force when it started. An agent killed at any moment loses only its
memory, so a restarted one rebuilds its per-pod records from these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypedDict, TypeVar

import msgspec

from bus.containerlabels import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    LABEL_PORTS,
    LABEL_RESTART_DELAY,
    LABEL_SANDBOX,
)

ContainerStatus = Literal["created", "running", "exited"]


T = TypeVar("T")


async def all_of(calls: list[Awaitable[T]]) -> list[T]:
    """The results of concurrent calls to an engine, once every one has ended (none is left
    running behind the caller's back); the first failure, if any, is raised then."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


class RuntimeFailure(Exception):
    """Root of runtime failures; `reason` is the Kubernetes waiting/terminated reason to report."""

    reason = "RunContainerError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImagePullError(RuntimeFailure):
    """The image is not present and cannot be pulled (Kubernetes: ErrImagePull)."""

    reason = "ErrImagePull"


class ImageNeverPullError(RuntimeFailure):
    """imagePullPolicy Never and the image is absent (Kubernetes: ErrImageNeverPull)."""

    reason = "ErrImageNeverPull"


class StartError(RuntimeFailure):
    """The container could not start, e.g. its command does not exist (Kubernetes: StartError)."""

    reason = "StartError"


class ContainerNotFound(RuntimeFailure):
    reason = "ContainerNotFound"


@dataclass(frozen=True)
class PortBinding:
    """A declared container port and the host port the agent allocated for it."""

    container_port: int
    host_port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container of one pod, attempt `attempt` (0 first)."""

    node: str
    pod_uid: str
    pod_namespace: str
    pod_name: str
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    cpu_millis: int | None = None  # limit
    memory_bytes: int | None = None  # limit
    image_pull_policy: str = "IfNotPresent"
    host_ip: str = "127.0.0.1"
    ports: tuple[PortBinding, ...] = ()
    attempt: int = 0
    # The restart back-off's delay when this attempt starts (None: no failure counted yet).
    restart_delay: float | None = None
    # The pod's sandbox (`Runtime.start_sandbox`) whose namespaces the container joins; "" for
    # host networking.
    sandbox: str = ""

    def labels(self) -> dict[str, str]:
        labels = {
            LABEL_NODE: self.node,
            LABEL_POD_UID: self.pod_uid,
            LABEL_POD_NAMESPACE: self.pod_namespace,
            LABEL_POD_NAME: self.pod_name,
            LABEL_CONTAINER: self.name,
            LABEL_ATTEMPT: str(self.attempt),
        }
        if self.ports:
            labels[LABEL_PORTS] = _ports_encoder.encode([_PortLabel.of(p) for p in self.ports]).decode()
        if self.restart_delay is not None:
            labels[LABEL_RESTART_DELAY] = repr(self.restart_delay)
        return labels


@dataclass(frozen=True)
class SandboxSpec:
    """A pod's sandbox: what holds the namespaces its containers share (network, hostname), as
    the kubelet's pod sandbox. Its DNS settings become the containers' resolv.conf."""

    node: str
    pod_uid: str
    pod_namespace: str
    pod_name: str
    hostname: str
    resolv_conf: str = ""  # the text of the pod's /etc/resolv.conf; "" for the runtime's default

    def labels(self) -> dict[str, str]:
        return {
            LABEL_NODE: self.node,
            LABEL_POD_UID: self.pod_uid,
            LABEL_POD_NAMESPACE: self.pod_namespace,
            LABEL_POD_NAME: self.pod_name,
            LABEL_SANDBOX: "true",
        }


@dataclass(frozen=True)
class Sandbox:
    """A sandbox a runtime made: `netns` names its network namespace in /run/netns."""

    id: str
    pod_uid: str
    netns: str
    running: bool = True


class _PortLabel(msgspec.Struct, rename="camel", omit_defaults=True):
    """One host port in LABEL_PORTS."""

    container_port: int
    host_port: int
    name: str = ""
    protocol: str = "TCP"

    @classmethod
    def of(cls, binding: PortBinding) -> _PortLabel:
        return cls(binding.container_port, binding.host_port, binding.name, binding.protocol)

    def binding(self) -> PortBinding:
        return PortBinding(self.container_port, self.host_port, self.name, self.protocol)


_ports_encoder = msgspec.json.Encoder()
_ports_decoder = msgspec.json.Decoder(list[_PortLabel])


class Owner(TypedDict):
    """Whose container it is: the fields of ContainerInfo that its labels hold."""

    pod_uid: str
    pod_namespace: str
    pod_name: str
    name: str
    attempt: int
    ports: tuple[PortBinding, ...]
    restart_delay: float | None


def owner(labels: Mapping[str, str]) -> Owner:
    """Read back what `ContainerSpec.labels` wrote, for `ContainerInfo(..., **owner(labels))`.

    The labels come from outside (an engine, a file, an older agent): one missing reads as
    empty, an attempt that is not a number as 0, ports or a delay that do not parse as none.
    """
    try:
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
    except ValueError:
        attempt = 0
    try:
        ports = tuple(p.binding() for p in _ports_decoder.decode(labels.get(LABEL_PORTS, "[]")))
    except msgspec.DecodeError:
        ports = ()
    try:
        delay: float | None = float(labels[LABEL_RESTART_DELAY])
    except (KeyError, ValueError):
        delay = None
    if delay is not None and not 0 < delay < float("inf"):
        delay = None
    return Owner(
        pod_uid=labels.get(LABEL_POD_UID, ""),
        pod_namespace=labels.get(LABEL_POD_NAMESPACE, ""),
        pod_name=labels.get(LABEL_POD_NAME, ""),
        name=labels.get(LABEL_CONTAINER, ""),
        attempt=attempt,
        ports=ports,
        restart_delay=delay,
    )


@dataclass(frozen=True)
class ContainerInfo:
    """What a runtime knows of one container it started (now or before a restart of the agent)."""

    id: str
    pod_uid: str
    pod_namespace: str
    pod_name: str
    name: str
    attempt: int
    status: ContainerStatus
    ports: tuple[PortBinding, ...] = ()  # the host ports it was started with
    restart_delay: float | None = None  # the restart back-off's delay when it started
    image: str = ""
    image_id: str = ""
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    oom_killed: bool = False
    error: str = ""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True)
class ContainerStats:
    cpu_nanos: int  # cumulative CPU time used
    memory_bytes: int  # current resident memory
    # When the figures were taken, for a runtime that samples on its own schedule (Docker
    # collects every second or so): a CPU rate must divide by the time between two readings,
    # not between two requests. None: just now.
    read_at: datetime | None = None


class LineBuffer:
    """Regroups raw output chunks at line breaks: `logs` promises chunks of whole lines.

    A line longer than `limit` is passed on in pieces rather than held in memory without bound.
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self._pending = b""
        self._limit = limit

    def feed(self, chunk: bytes) -> bytes:
        """The whole lines completed by `chunk` (possibly b""); the rest waits for more."""
        self._pending += chunk
        cut = self._pending.rfind(b"\n") + 1
        if not cut and len(self._pending) >= self._limit:
            cut = len(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return ready

    def flush(self) -> bytes:
        """What is left at the end of the output: a last line without its line break."""
        rest, self._pending = self._pending, b""
        return rest


class Runtime(Protocol):
    """How the node agent runs containers. All methods are safe to call concurrently."""

    name: str

    async def version(self) -> str:
        """`docker://20.10.24`, `process://linux-6.1`, `fake://1`: shown as the node's runtime."""
        ...

    async def ensure_image(self, image: str, policy: str) -> str:
        """Make `image` present (pulling per `policy`); its id. ImagePullError if impossible."""
        ...

    async def start(self, spec: ContainerSpec) -> str:
        """Create and start a container; its id. StartError (or ImagePullError) on failure."""
        ...

    async def wait(self, container_id: str) -> int:
        """Block until the container exits; its exit code (returns at once if already exited)."""
        ...

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after `grace_seconds` if still running. No error if not running."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove a stopped container and what it left (logs included). No error if absent."""
        ...

    async def inspect(self, container_id: str) -> ContainerInfo:
        """Current state; ContainerNotFound if unknown."""
        ...

    async def containers(self, node: str) -> list[ContainerInfo]:
        """Every container this runtime started for `node`, running or not."""
        ...

    def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[bytes]:
        """The container's output (stdout and stderr interleaved), as chunks of whole lines."""
        ...

    async def exec(self, container_id: str, command: list[str]) -> ExecResult:
        """Run `command` inside the running container; its exit code and output.

        StartError if it cannot be run. Callers bound it with `asyncio.timeout`; on cancellation
        the runtime stops the command.
        """
        ...

    async def stats(self, container_id: str) -> ContainerStats: ...

    async def start_sandbox(self, spec: SandboxSpec) -> Sandbox:
        """Make (or find again) the pod's sandbox, its network namespace named
        `steer-<pod uid>` in /run/netns. RuntimeFailure if it cannot be made."""
        ...

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        """Stop and remove a sandbox and its namespace's name. No error if absent."""
        ...

    async def sandboxes(self, node: str) -> list[Sandbox]:
        """Every sandbox this runtime made for `node` (containers() never lists them)."""
        ...

    async def close(self) -> None: ...
