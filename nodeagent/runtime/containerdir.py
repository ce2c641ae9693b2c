"""The files the process runtime keeps for a container, in root_dir/<pod uid>/<container>/.

Kept apart from the runtime because these files are all that outlives an agent: the next one
(another process, after a restart) finds its containers by scanning them and reads their logs
and exit codes from them. So their layout and encoding live here, once, and whatever one agent
writes that another may read is replaced atomically. Per attempt of the container:

- `<attempt>.json` (`State`): what a later agent needs to find the process again;
- `<attempt>.log`: stdout and stderr, written by the process itself, read here in chunks from
  an offset (the tail of a file is found by reading it backwards, not the whole of it);
- `<attempt>.exit` (`Exit`): the exit code, written by the agent that reaped the process.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import msgspec

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class State(msgspec.Struct):
    """The `<attempt>.json` file."""

    id: str
    labels: dict[str, str]
    pid: int
    start_ticks: int  # with pid, the identity of the process; 0 if it was gone before we looked
    started_at: datetime
    image: str
    cwd: str
    env: dict[str, str]
    sandbox: str = ""  # the pod's sandbox (its network namespace's name); "" on the host's network


class SandboxRecord(msgspec.Struct):
    """A pod's `sandbox.json`: the process runtime's sandbox is a network namespace, plus the
    hostname and resolv.conf its processes get."""

    labels: dict[str, str]
    netns: str
    hostname: str
    resolv_conf: str = ""  # path of the pod's resolv.conf; "" for the host's


class Exit(msgspec.Struct):
    """The `<attempt>.exit` file."""

    exit_code: int
    finished_at: datetime


@dataclass(frozen=True)
class Files:
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


def safe_name(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)
    return cleaned if cleaned.strip(".") else "_"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` atomically: a reader (another agent) never sees half a file."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_bytes(data)
    partial.replace(path)


def read_exit(files: Files) -> Exit | None:
    try:
        return msgspec.json.decode(files.exit.read_bytes(), type=Exit)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def scan(root: Path) -> list[tuple[Path, State]]:
    found = []
    for path in root.glob("*/*/*.json"):
        if not path.stem.isdigit():
            continue  # not a state file of ours
        try:
            found.append((path, msgspec.json.decode(path.read_bytes(), type=State)))
        except FileNotFoundError:
            continue  # removed while we looked
        except (OSError, msgspec.DecodeError) as err:
            log.warning("ignoring %s: %s", path, err)
    return found


def discard(files: Files) -> None:
    for path in (files.state, files.log, files.exit):
        path.unlink(missing_ok=True)
    if not any(files.dir.glob("*.json")):  # no other attempt: the scratch directory goes too
        shutil.rmtree(files.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            files.dir.parent.rmdir()  # the pod's directory, once its last container is gone


def start_offset(path: Path, tail: int | None, since: datetime | None) -> int:
    """Where reading the log starts, for `logs(tail=, since=)`."""
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


def read_at(path: Path, offset: int) -> bytes | None:
    """Up to READ_CHUNK bytes from `offset`; None once the file is gone (the container removed)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(READ_CHUNK)
    except FileNotFoundError:
        return None
