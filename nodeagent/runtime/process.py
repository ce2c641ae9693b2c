"""Containers as plain host processes: the runtime of `steer up` when no Docker engine answers.

The image is ignored and the command runs on the host, directly (no shell), each container in a
session of its own so that signals reach its whole process group. There is no isolation: a
container, and whatever `exec` runs in it, sees the host's files, processes and network.

Each container keeps its files in root_dir/<pod uid>/<container>/ (containerdir.py), which is also
its working directory unless the spec names one:

- `<attempt>.json`: what a later agent needs to find the process again (adoption);
- `<attempt>.log`: stdout and stderr, written by the process itself. No pipe runs through the
  agent, so the output outlives the agent and the process never dies of SIGPIPE when it goes.
  The lines carry no timestamps, so `since` is applied to the file as a whole: a log last
  written before `since` yields nothing (bar what follows), any other yields all its lines;
- `<attempt>.exit`: the exit code, written by the agent that started the process when it reaps it.

A process outlives the agent that started it, but only a parent can reap a child: an adopted
process that has exited reports exit code -1 ("exit code unknown") unless its first agent wrote
the `.exit` file. A process is recognised by its pid together with its start time (field 22 of
/proc/<pid>/stat, read in procfs.py), so a reused pid is never taken for it, nor signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from nodeagent.network import links, names
from nodeagent.runtime.base import (
    LABEL_NODE,
    LABEL_POD_UID,
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ContainerStats,
    ExecResult,
    LineBuffer,
    RuntimeFailure,
    Sandbox,
    SandboxSpec,
    StartError,
    owner,
)
from nodeagent.runtime.containerdir import (
    Exit,
    Files,
    SandboxRecord,
    State,
    discard,
    read_at,
    read_exit,
    safe_name,
    scan,
    start_offset,
    write_atomically,
)
from nodeagent.runtime.entering import launcher
from nodeagent.runtime.procfs import group_usage, read_stat

log = logging.getLogger(__name__)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ADOPTED_POLL_SECONDS = 0.5
STOP_POLL_SECONDS = 0.05
FOLLOW_POLL_SECONDS = 0.2
KILL_WAIT_SECONDS = 10.0
UNKNOWN_EXIT = -1


class ProcessRuntime:
    """A Runtime whose containers are host processes (see the module docstring)."""

    name = "process"

    def __init__(self, root_dir: Path) -> None:
        self.root_dir = root_dir.absolute()  # its paths go into PATH and the state files
        self._paths: dict[str, Path] = {}  # container id -> its .json; rebuilt by a scan on a miss
        self._reapers: dict[str, asyncio.Task[int]] = {}  # the processes this object started
        self._search_path: str | None = None

    async def version(self) -> str:
        return f"process://{platform.release()}"

    async def ensure_image(self, image: str, policy: str) -> str:
        return "process://none"

    async def start(self, spec: ContainerSpec) -> str:
        if not spec.command:
            raise StartError("the process runtime needs a command")
        files = Files(self.root_dir / safe_name(spec.pod_uid) / safe_name(spec.name), spec.attempt)
        if self._search_path is None:
            self._search_path = await asyncio.to_thread(_search_path, self.root_dir)
        files.dir.mkdir(parents=True, exist_ok=True)
        if files.state.exists():
            raise StartError(f"container {spec.name} attempt {spec.attempt} of pod {spec.pod_uid} exists")
        cwd = spec.working_dir or str(files.dir)
        env = {"PATH": self._search_path, "HOME": cwd, "LANG": "C.UTF-8", **spec.env}
        argv = [*self._entering(spec.pod_uid, spec.sandbox), *spec.command, *spec.args]
        if spec.sandbox:
            env.setdefault("HOSTNAME", self._sandbox_record(spec.pod_uid).hostname)
        started_at = datetime.now(UTC)
        out = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as err:
            await asyncio.to_thread(discard, files)
            raise StartError(f"cannot run {argv[0]!r}: {err.strerror}: {err.filename!r}") from err
        finally:
            os.close(out)
        stat = read_stat(proc.pid)
        state = State(
            id=uuid.uuid4().hex,
            labels=spec.labels(),
            pid=proc.pid,
            start_ticks=stat.start_ticks if stat else 0,
            started_at=started_at,
            image=spec.image,
            cwd=cwd,
            env=env,
            sandbox=spec.sandbox,
        )
        write_atomically(files.state, msgspec.json.encode(state))
        self._paths[state.id] = files.state
        self._reapers[state.id] = asyncio.create_task(self._reap(proc, files), name=f"reap {state.id}")
        log.debug("started %s (pid %d) for %s/%s", state.id, proc.pid, spec.pod_name, spec.name)
        return state.id

    async def _reap(self, proc: asyncio.subprocess.Process, files: Files) -> int:
        code = _exit_code(await proc.wait())
        # When a container's main process ends, its other processes go with it.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            write_atomically(files.exit, msgspec.json.encode(Exit(code, datetime.now(UTC))))
        except OSError as err:
            log.warning("cannot record the exit code of %s: %s", files.state, err)
        return code

    async def wait(self, container_id: str) -> int:
        state, files = self._load(container_id)
        reaper = self._reapers.get(container_id)
        if reaper is not None:
            return await asyncio.shield(reaper)
        # Not our child: no SIGCHLD arrives for it and waitpid is not allowed, so /proc is polled.
        # Twice a second is cheap and soon enough for restart decisions (a pidfd would wake at
        # once but needs Linux 5.3+; adopted processes are rare, only after an agent restart).
        await self._poll_until_exited(state, ADOPTED_POLL_SECONDS)
        ended = read_exit(files)
        return ended.exit_code if ended else UNKNOWN_EXIT

    async def stop(self, container_id: str, grace_seconds: float) -> None:
        state, _ = self._load(container_id)
        if not self._is_running(state):
            return
        _signal_group(state.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_seconds):
                await self._until_exited(state)
        except TimeoutError:
            await self._kill(state)

    async def _kill(self, state: State) -> None:
        _signal_group(state.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(KILL_WAIT_SECONDS):
                await self._until_exited(state)
        except TimeoutError:
            raise RuntimeFailure(f"process {state.pid} is still there after SIGKILL") from None

    async def _until_exited(self, state: State) -> None:
        reaper = self._reapers.get(state.id)
        if reaper is not None:
            await asyncio.wait({reaper})  # unlike awaiting it, a timeout does not cancel the reaper
            return
        await self._poll_until_exited(state, STOP_POLL_SECONDS)

    async def _poll_until_exited(self, state: State, interval: float) -> None:
        while True:
            if not self._is_running(state):
                return
            await asyncio.sleep(interval)

    async def remove(self, container_id: str) -> None:
        try:
            state, files = self._load(container_id)
        except ContainerNotFound:
            return
        if self._is_running(state):
            await self._kill(state)
        elif (reaper := self._reapers.get(container_id)) is not None:
            await asyncio.wait({reaper})  # its .exit file must not land after the files are gone
        self._reapers.pop(container_id, None)
        self._paths.pop(container_id, None)
        await asyncio.to_thread(discard, files)

    async def inspect(self, container_id: str) -> ContainerInfo:
        state, files = self._load(container_id)
        return self._info(state, files)

    async def containers(self, node: str) -> list[ContainerInfo]:
        found = await asyncio.to_thread(scan, self.root_dir)
        self._paths.update((state.id, path) for path, state in found)
        return [
            self._info(state, Files(path.parent, int(path.stem)))
            for path, state in found
            if state.labels.get(LABEL_NODE) == node
        ]

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
    ) -> AsyncIterator[bytes]:
        state, files = self._load(container_id)
        offset = await asyncio.to_thread(start_offset, files.log, tail, since)
        lines = LineBuffer()
        while True:
            # Looked at before reading, so that what the process wrote just before it exited is read.
            running = self._is_running(state)
            chunk = await asyncio.to_thread(read_at, files.log, offset)
            if chunk:
                offset += len(chunk)
                if ready := lines.feed(chunk):
                    yield ready
                continue
            if chunk is None or not follow or not running:
                break
            reaper = self._reapers.get(container_id)
            if reaper is not None:
                await asyncio.wait({reaper}, timeout=FOLLOW_POLL_SECONDS)
            else:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
        if rest := lines.flush():
            yield rest

    async def exec(self, container_id: str, command: list[str]) -> ExecResult:
        """Run `command` on the host with the container's environment and working directory."""
        state, _ = self._load(container_id)
        if not self._is_running(state):
            raise StartError(f"container {container_id} is not running")
        if not command:
            raise StartError("exec needs a command")
        prefix = self._entering(state.labels.get(LABEL_POD_UID, ""), state.sandbox)
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix,
                *command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=state.cwd,
                env=state.env,
                start_new_session=True,
            )
        except OSError as err:
            raise StartError(f"cannot run {command[0]!r}: {err.strerror}: {err.filename!r}") from err
        try:
            output, _ = await proc.communicate()
        except asyncio.CancelledError:
            # The caller gave up (a probe timed out): the command, and what it started, go too.
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        assert proc.returncode is not None
        return ExecResult(_exit_code(proc.returncode), output)

    async def stats(self, container_id: str) -> ContainerStats:
        """CPU time and resident memory summed over the container's process group."""
        state, _ = self._load(container_id)
        if not self._is_running(state):
            return ContainerStats(cpu_nanos=0, memory_bytes=0)
        cpu_nanos, memory_bytes = await asyncio.to_thread(group_usage, state.pid)
        return ContainerStats(cpu_nanos=cpu_nanos, memory_bytes=memory_bytes)

    # -- sandboxes: a network namespace made here, a hostname and a resolv.conf

    def _sandbox_path(self, pod_uid: str) -> Path:
        return self.root_dir / safe_name(pod_uid) / "sandbox.json"

    def _sandbox_record(self, pod_uid: str) -> SandboxRecord:
        try:
            return msgspec.json.decode(self._sandbox_path(pod_uid).read_bytes(), type=SandboxRecord)
        except (OSError, msgspec.DecodeError) as err:
            raise StartError(f"the sandbox of pod {pod_uid} is missing or unreadable: {err}") from None

    def _entering(self, pod_uid: str, sandbox: str) -> list[str]:
        """The launcher that puts a command into the pod's namespaces; none on the host network."""
        if not sandbox:
            return []
        record = self._sandbox_record(pod_uid)
        return launcher(str(links.NETNS_DIR / record.netns), record.hostname, record.resolv_conf)

    async def start_sandbox(self, spec: SandboxSpec) -> Sandbox:
        netns = names.netns(spec.pod_uid)
        path = self._sandbox_path(spec.pod_uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        resolv = ""
        if spec.resolv_conf:
            resolv_path = path.parent / "resolv.conf"
            write_atomically(resolv_path, spec.resolv_conf.encode())
            resolv = str(resolv_path)
        record = SandboxRecord(
            labels=spec.labels(), netns=netns, hostname=spec.hostname[:63], resolv_conf=resolv
        )
        write_atomically(path, msgspec.json.encode(record))
        try:
            await asyncio.to_thread(links.create_netns, netns)
        except OSError as err:
            raise RuntimeFailure(f"cannot create network namespace {netns}: {err}") from err
        return Sandbox(id=netns, pod_uid=spec.pod_uid, netns=netns)

    async def remove_sandbox(self, sandbox: Sandbox) -> None:
        await asyncio.to_thread(links.remove_netns, sandbox.netns)
        with contextlib.suppress(FileNotFoundError):
            self._sandbox_path(sandbox.pod_uid).unlink()

    async def sandboxes(self, node: str) -> list[Sandbox]:
        found = []
        for path in self.root_dir.glob("*/sandbox.json") if self.root_dir.is_dir() else []:
            try:
                record = msgspec.json.decode(path.read_bytes(), type=SandboxRecord)
            except (OSError, msgspec.DecodeError):
                continue
            if record.labels.get(LABEL_NODE) == node:
                uid = record.labels.get(LABEL_POD_UID, "")
                running = (links.NETNS_DIR / record.netns).exists()
                found.append(Sandbox(id=record.netns, pod_uid=uid, netns=record.netns, running=running))
        return found

    async def close(self) -> None:
        """Stop watching; the processes keep running, for the next agent to adopt."""
        for reaper in self._reapers.values():
            reaper.cancel()
        await asyncio.gather(*self._reapers.values(), return_exceptions=True)
        self._reapers.clear()

    def _load(self, container_id: str) -> tuple[State, Files]:
        path = self._paths.get(container_id)
        if path is None or not path.exists():
            self._paths = {state.id: path for path, state in scan(self.root_dir)}
            path = self._paths.get(container_id)
        try:
            if path is not None:
                state = msgspec.json.decode(path.read_bytes(), type=State)
                return state, Files(path.parent, int(path.stem))
        except FileNotFoundError:
            pass
        raise ContainerNotFound(f"no container {container_id}")

    def _is_running(self, state: State) -> bool:
        reaper = self._reapers.get(state.id)
        if reaper is not None:
            return not reaper.done()
        stat = read_stat(state.pid)
        return stat is not None and stat.start_ticks == state.start_ticks and stat.state not in "ZX"

    def _info(self, state: State, files: Files) -> ContainerInfo:
        running = self._is_running(state)
        ended = None if running else read_exit(files)
        return ContainerInfo(
            id=state.id,
            **owner(state.labels),
            status="running" if running else "exited",
            image=state.image,
            image_id="process://none",
            exit_code=None if running else ended.exit_code if ended else UNKNOWN_EXIT,
            started_at=state.started_at,
            finished_at=ended.finished_at if ended else None,
            error="" if running or ended else "exit code unknown (agent restarted)",
        )


def _exit_code(returncode: int) -> int:
    """Killed by signal N is exit code 128 + N, as a shell (and Docker) reports it."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _search_path(root: Path) -> str:
    """PATH for containers: the host's tools first, then busybox applets, so `sh -c` scripts
    written for busybox images also run on a host that has busybox but lacks some tool."""
    applets = _busybox_applets(root)
    return f"{BASE_PATH}:{applets}" if applets else BASE_PATH


def _busybox_applets(root: Path) -> Path | None:
    busybox = "/bin/busybox" if os.access("/bin/busybox", os.X_OK) else shutil.which("busybox")
    if busybox is None:
        return None
    target = root / ".busybox-bin"
    if target.is_dir():
        return target
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=False, timeout=10)
    if listed.returncode != 0:
        log.warning("%s --list failed: %s", busybox, listed.stderr.strip())
        return None
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".busybox-bin.", dir=root))
    for applet in listed.stdout.split():
        if applet != "busybox" and "/" not in applet:
            (building / applet).symlink_to(busybox)
    try:
        building.rename(target)
    except OSError:  # another runtime sharing root_dir made it first
        shutil.rmtree(building, ignore_errors=True)
    return target
