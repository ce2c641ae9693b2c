"""Containers as plain host processes: the runtime of `steer up` when no Docker engine answers.

The image is ignored and the command runs on the host, directly (no shell), each container in a
session of its own so that signals reach its whole process group. There is no isolation: a
container, and whatever `exec` runs in it, sees the host's files, processes and network.

Each container keeps its files in root_dir/<pod uid>/<container>/, which is also its working
directory unless the spec names one:

- `<attempt>.json`: what a later agent needs to find the process again (adoption);
- `<attempt>.log`: stdout and stderr, written by the process itself. No pipe runs through the
  agent, so the output outlives the agent and the process never dies of SIGPIPE when it goes.
  The lines carry no timestamps, so `since` is applied to the file as a whole: a log last
  written before `since` yields nothing (bar what follows), any other yields all its lines;
- `<attempt>.exit`: the exit code, written by the agent that started the process when it reaps it.

A process outlives the agent that started it, but only a parent can reap a child: an adopted
process that has exited reports exit code -1 ("exit code unknown") unless its first agent wrote
the `.exit` file. A process is recognised by its pid together with its start time (field 22 of
/proc/<pid>/stat), so a reused pid is never taken for it, nor signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec

from nodeagent.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_NODE,
    LABEL_POD_NAME,
    LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
    ContainerInfo,
    ContainerNotFound,
    ContainerSpec,
    ContainerStats,
    ExecResult,
    LineBuffer,
    RuntimeFailure,
    StartError,
)

log = logging.getLogger(__name__)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ADOPTED_POLL_SECONDS = 0.5
STOP_POLL_SECONDS = 0.05
FOLLOW_POLL_SECONDS = 0.2
KILL_WAIT_SECONDS = 10.0
UNKNOWN_EXIT = -1
READ_CHUNK = 1 << 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _State(msgspec.Struct):
    """The `<attempt>.json` file."""

    id: str
    labels: dict[str, str]
    pid: int
    start_ticks: int  # with pid, the identity of the process; 0 if it was gone before we looked
    started_at: datetime
    image: str
    cwd: str
    env: dict[str, str]


class _Exit(msgspec.Struct):
    """The `<attempt>.exit` file."""

    exit_code: int
    finished_at: datetime


@dataclass(frozen=True)
class _Files:
    dir: Path
    attempt: int

    @property
    def state(self) -> Path:
        return self.dir / f"{self.attempt}.json"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.attempt}.log"

    @property
    def exit(self) -> Path:
        return self.dir / f"{self.attempt}.exit"


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
        files = _Files(self.root_dir / _safe(spec.pod_uid) / _safe(spec.name), spec.attempt)
        if self._search_path is None:
            self._search_path = await asyncio.to_thread(_search_path, self.root_dir)
        files.dir.mkdir(parents=True, exist_ok=True)
        if files.state.exists():
            raise StartError(f"container {spec.name} attempt {spec.attempt} of pod {spec.pod_uid} exists")
        cwd = spec.working_dir or str(files.dir)
        env = {"PATH": self._search_path, "HOME": cwd, "LANG": "C.UTF-8", **spec.env}
        argv = [*spec.command, *spec.args]
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
            await asyncio.to_thread(_discard, files)
            raise StartError(f"cannot run {argv[0]!r}: {err.strerror}: {err.filename!r}") from err
        finally:
            os.close(out)
        stat = read_stat(proc.pid)
        state = _State(
            id=uuid.uuid4().hex,
            labels=spec.labels(),
            pid=proc.pid,
            start_ticks=stat.start_ticks if stat else 0,
            started_at=started_at,
            image=spec.image,
            cwd=cwd,
            env=env,
        )
        _write(files.state, msgspec.json.encode(state))
        self._paths[state.id] = files.state
        self._reapers[state.id] = asyncio.create_task(self._reap(proc, files), name=f"reap {state.id}")
        log.debug("started %s (pid %d) for %s/%s", state.id, proc.pid, spec.pod_name, spec.name)
        return state.id

    async def _reap(self, proc: asyncio.subprocess.Process, files: _Files) -> int:
        code = _exit_code(await proc.wait())
        # When a container's main process ends, its other processes go with it.
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            _write(files.exit, msgspec.json.encode(_Exit(code, datetime.now(UTC))))
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
        ended = _read_exit(files)
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

    async def _kill(self, state: _State) -> None:
        _signal_group(state.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(KILL_WAIT_SECONDS):
                await self._until_exited(state)
        except TimeoutError:
            raise RuntimeFailure(f"process {state.pid} is still there after SIGKILL") from None

    async def _until_exited(self, state: _State) -> None:
        reaper = self._reapers.get(state.id)
        if reaper is not None:
            await asyncio.wait({reaper})  # unlike awaiting it, a timeout does not cancel the reaper
            return
        await self._poll_until_exited(state, STOP_POLL_SECONDS)

    async def _poll_until_exited(self, state: _State, interval: float) -> None:
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
        await asyncio.to_thread(_discard, files)

    async def inspect(self, container_id: str) -> ContainerInfo:
        state, files = self._load(container_id)
        return self._info(state, files)

    async def containers(self, node: str) -> list[ContainerInfo]:
        found = await asyncio.to_thread(_scan, self.root_dir)
        self._paths.update((state.id, path) for path, state in found)
        return [
            self._info(state, _Files(path.parent, int(path.stem)))
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
        offset = await asyncio.to_thread(_start_offset, files.log, tail, since)
        lines = LineBuffer()
        while True:
            # Looked at before reading, so that what the process wrote just before it exited is read.
            running = self._is_running(state)
            chunk = await asyncio.to_thread(_read_at, files.log, offset)
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
        try:
            proc = await asyncio.create_subprocess_exec(
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

    async def close(self) -> None:
        """Stop watching; the processes keep running, for the next agent to adopt."""
        for reaper in self._reapers.values():
            reaper.cancel()
        await asyncio.gather(*self._reapers.values(), return_exceptions=True)
        self._reapers.clear()

    def _load(self, container_id: str) -> tuple[_State, _Files]:
        path = self._paths.get(container_id)
        if path is None or not path.exists():
            self._paths = {state.id: path for path, state in _scan(self.root_dir)}
            path = self._paths.get(container_id)
        try:
            if path is not None:
                state = msgspec.json.decode(path.read_bytes(), type=_State)
                return state, _Files(path.parent, int(path.stem))
        except FileNotFoundError:
            pass
        raise ContainerNotFound(f"no container {container_id}")

    def _is_running(self, state: _State) -> bool:
        reaper = self._reapers.get(state.id)
        if reaper is not None:
            return not reaper.done()
        stat = read_stat(state.pid)
        return stat is not None and stat.start_ticks == state.start_ticks and stat.state not in "ZX"

    def _info(self, state: _State, files: _Files) -> ContainerInfo:
        labels = state.labels
        running = self._is_running(state)
        ended = None if running else _read_exit(files)
        try:
            attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        except ValueError:
            attempt = 0
        return ContainerInfo(
            id=state.id,
            pod_uid=labels.get(LABEL_POD_UID, ""),
            pod_namespace=labels.get(LABEL_POD_NAMESPACE, ""),
            pod_name=labels.get(LABEL_POD_NAME, ""),
            name=labels.get(LABEL_CONTAINER, ""),
            attempt=attempt,
            status="running" if running else "exited",
            image=state.image,
            image_id="process://none",
            exit_code=None if running else ended.exit_code if ended else UNKNOWN_EXIT,
            started_at=state.started_at,
            finished_at=ended.finished_at if ended else None,
            error="" if running or ended else "exit code unknown (agent restarted)",
        )


@dataclass(frozen=True)
class _Stat:
    """The fields of /proc/<pid>/stat this runtime uses."""

    state: str
    pgrp: int
    cpu_ticks: int  # utime + stime
    start_ticks: int
    rss_pages: int


def read_stat(pid: int | str) -> _Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the rest follows the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return _Stat(
        state=fields[0],
        pgrp=int(fields[2]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def group_usage(pgid: int) -> tuple[int, int]:
    """CPU nanoseconds and resident bytes of the processes in group `pgid`."""
    ticks = pages = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_stat(entry)) is not None and stat.pgrp == pgid:
            ticks += stat.cpu_ticks
            pages += stat.rss_pages
    return ticks * 1_000_000_000 // _CLOCK_TICKS, pages * _PAGE_SIZE


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)
    return cleaned if cleaned.strip(".") else "_"


def _exit_code(returncode: int) -> int:
    """Killed by signal N is exit code 128 + N, as a shell (and Docker) reports it."""
    return 128 - returncode if returncode < 0 else returncode


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _write(path: Path, data: bytes) -> None:
    """Replace `path` atomically: a reader (another agent) never sees half a file."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_bytes(data)
    partial.replace(path)


def _read_exit(files: _Files) -> _Exit | None:
    try:
        return msgspec.json.decode(files.exit.read_bytes(), type=_Exit)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def _scan(root: Path) -> list[tuple[Path, _State]]:
    found = []
    for path in root.glob("*/*/*.json"):
        if not path.stem.isdigit():
            continue  # not a state file of ours
        try:
            found.append((path, msgspec.json.decode(path.read_bytes(), type=_State)))
        except FileNotFoundError:
            continue  # removed while we looked
        except (OSError, msgspec.DecodeError) as err:
            log.warning("ignoring %s: %s", path, err)
    return found


def _discard(files: _Files) -> None:
    for path in (files.state, files.log, files.exit):
        path.unlink(missing_ok=True)
    if not any(files.dir.glob("*.json")):  # no other attempt: the scratch directory goes too
        shutil.rmtree(files.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            files.dir.parent.rmdir()  # the pod's directory, once its last container is gone


def _start_offset(path: Path, tail: int | None, since: datetime | None) -> int:
    try:
        size = path.stat().st_size
        if since is not None and path.stat().st_mtime < since.timestamp():
            return size
        if tail is None:
            return 0
        if tail <= 0:
            return size
        with path.open("rb") as f:
            return _tail_offset(f, size, tail)
    except FileNotFoundError:
        return 0


def _tail_offset(f: BinaryIO, size: int, lines: int) -> int:
    """Where the last `lines` lines of the file start, read backwards a block at a time."""
    f.seek(max(size - 1, 0))
    seen = -1 if f.read(1) == b"\n" else 0  # a final line break ends a line, it starts none
    pos = size
    while pos > 0:
        step = min(READ_CHUNK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        end = len(block)
        while (i := block.rfind(b"\n", 0, end)) >= 0:
            seen += 1
            if seen == lines:
                return pos + i + 1
            end = i
    return 0


def _read_at(path: Path, offset: int) -> bytes | None:
    """Up to READ_CHUNK bytes from `offset`; None once the file is gone (the container removed)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(READ_CHUNK)
    except FileNotFoundError:
        return None


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
