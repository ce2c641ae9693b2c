"""Hollow containers that exist only in memory, for scale tests and benchmarks.

Thousands of hollow node agents share one process, so a hollow container is a small record and
nothing more: no task runs per container, and an `asyncio.Event` exists only while someone waits
for it to exit. Commands are not run, but a little of their shell text is read so that restart
and shutdown logic can be exercised:

- `exit N` (outside a `trap`), `false` or `true` as the command: the container exits with that
  code right after it starts; otherwise it runs until stopped.
- `trap '<handler>' TERM`: on stop, a handler containing `exit N` exits with N; any other handler
  (an empty one included) ignores SIGTERM, so the container is killed (137) after the grace
  period. Without a trap, SIGTERM ends it with 143.

`exec` runs nothing either: it exits with the code the same rules give (0 by default) and no
output. Logs hold one line per start.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nodeagent.runtime.base import (
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ContainerStats,
    ExecResult,
    ImageNeverPullError,
    ImagePullError,
    Sandbox,
    SandboxSpec,
    StartError,
    owner,
)

SIGTERM_EXIT = 143
SIGKILL_EXIT = 137

_TRAP = re.compile(r"""trap\s+(?:'([^']*)'|"([^"]*)"|(\S+))\s+(?:SIG)?TERM\b""")
_EXIT = re.compile(r"\bexit\s+(\d+)")


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a hollow command does: exit at once (with a code) or run; and how it meets SIGTERM."""

    exit_code: int | None  # None: runs until stopped
    on_term: int | None  # exit code on SIGTERM; None: ignores it


def behaviour(argv: list[str]) -> Behaviour:
    """Read the few shell idioms the contract tests and the restart logic rely on."""
    if argv and argv[0].rsplit("/", 1)[-1] in ("false", "true"):
        return Behaviour(1 if argv[0].endswith("false") else 0, SIGTERM_EXIT)
    script = " ".join(argv)
    on_term: int | None = SIGTERM_EXIT
    trap = _TRAP.search(script)
    if trap:
        handler = next(group for group in trap.groups() if group is not None)
        handler_exit = _EXIT.search(handler)
        on_term = int(handler_exit.group(1)) if handler_exit else None
        script = script[: trap.start()] + script[trap.end() :]
    exits = _EXIT.search(script)
    return Behaviour(int(exits.group(1)) if exits else None, on_term)


@dataclass(eq=False, slots=True)
class _Hollow:
    id: str
    spec: ContainerSpec
    image_id: str
    started_at: datetime
    on_term: int | None
    exit_code: int | None = None
    finished_at: datetime | None = None
    exited: asyncio.Event | None = None  # made only when someone waits

    def finish(self, code: int) -> None:
        if self.exit_code is not None:
            return
        self.exit_code = code
        self.finished_at = datetime.now(UTC)
        if self.exited is not None:
            self.exited.set()

    async def wait(self) -> int:
        if self.exit_code is None:
            if self.exited is None:
                self.exited = asyncio.Event()
            await self.exited.wait()
        assert self.exit_code is not None
        return self.exit_code

    def log_line(self) -> bytes:
        return f"started {self.spec.name} attempt {self.spec.attempt}\n".encode()


class FakeRuntime:
    """A Runtime whose containers are in-memory records (see the module docstring)."""

    name = "fake"

    def __init__(
        self,
        start_latency: float = 0.0,
        fail_images: set[str] | frozenset[str] = frozenset(),
        failure_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.start_latency = start_latency
        self.fail_images = frozenset(fail_images)
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._by_id: dict[str, _Hollow] = {}
        self._by_node: dict[str, dict[str, _Hollow]] = {}

    async def version(self) -> str:
        return "fake://1"

    async def ensure_image(self, image: str, policy: str) -> str:
        if image in self.fail_images:
            if policy == "Never":
                raise ImageNeverPullError(f"image {image} is not present and imagePullPolicy is Never")
            raise ImagePullError(f"cannot pull image {image}: injected failure")
        return "sha256:" + hashlib.sha256(image.encode()).hexdigest()

    async def start(self, spec: ContainerSpec) -> str:
        if self.start_latency > 0:
            await asyncio.sleep(self.start_latency)  # stands for the work a real start does
        image_id = await self.ensure_image(spec.image, "IfNotPresent")
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise StartError(f"cannot start container {spec.name}: injected failure")
        what = behaviour([*spec.command, *spec.args])
        hollow = _Hollow(uuid.uuid4().hex, spec, image_id, datetime.now(UTC), what.on_term)
        if what.exit_code is not None:
            hollow.finish(what.exit_code)
        self._by_id[hollow.id] = hollow
        self._by_node.setdefault(spec.node, {})[hollow.id] = hollow
        return hollow.id

    def _get(self, container_id: str) -> _Hollow:
        try:
            return self._by_id[container_id]
        except KeyError:
            raise ContainerNotFound(f"no container {container_id}") from None

    async def wait(self, container_id: str) -> int:
        return await self._get(container_id).wait()

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        hollow = self._get(container_id)
        if hollow.exit_code is not None:
            return
        if hollow.on_term is not None:
            hollow.finish(hollow.on_term)
            return
        # SIGTERM is ignored: the container lives out its grace period, then is killed.
        try:
            async with asyncio.timeout(grace_seconds):
                await hollow.wait()
        except TimeoutError:
            hollow.finish(SIGKILL_EXIT)

    async def remove(self, container_id: str) -> None:
        hollow = self._by_id.pop(container_id, None)
        if hollow is None:
            return
        hollow.finish(SIGKILL_EXIT)  # wakes any waiter, as a force remove does
        on_node = self._by_node.get(hollow.spec.node, {})
        on_node.pop(container_id, None)
        if not on_node:
            self._by_node.pop(hollow.spec.node, None)

    async def inspect(self, container_id: str) -> ContainerInfo:
        return self._info(self._get(container_id))

    async def containers(self, node: str) -> list[ContainerInfo]:
        return [self._info(hollow) for hollow in self._by_node.get(node, {}).values()]

    def _info(self, hollow: _Hollow) -> ContainerInfo:
        spec = hollow.spec
        return ContainerInfo(
            id=hollow.id,
            **owner(spec.labels()),
            status="running" if hollow.exit_code is None else "exited",
            image=spec.image,
            image_id=hollow.image_id,
            exit_code=hollow.exit_code,
            started_at=hollow.started_at,
            finished_at=hollow.finished_at,
        )

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[bytes]:
        hollow = self._get(container_id)
        if tail != 0 and (since is None or since <= hollow.started_at):
            yield hollow.log_line()
        if follow:
            await hollow.wait()

    async def exec(self, container_id: str, command: list[str]) -> ExecResult:
        hollow = self._get(container_id)
        if hollow.exit_code is not None:
            raise StartError(f"container {container_id} is not running")
        if not command:
            raise StartError("exec needs a command")
        code = behaviour(command).exit_code
        return ExecResult(0 if code is None else code, b"")

    async def stats(self, container_id: str) -> ContainerStats:
        self._get(container_id)
        return ContainerStats(cpu_nanos=1_000_000, memory_bytes=4 << 20)

    async def start_sandbox(self, spec: SandboxSpec) -> Sandbox:
        """Hollow: no namespace is made (a hollow node runs on the host network)."""
        return Sandbox(id=f"sandbox-{spec.pod_uid}", pod_uid=spec.pod_uid, netns="")

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        return None

    async def sandboxes(self, node: str) -> list[Sandbox]:
        return []

    async def close(self) -> None:
        """Nothing to release: hollow containers vanish with the object."""
