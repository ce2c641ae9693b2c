"""A running `steer up`'s claim on its data dir: one at a time, and found by `steer down`.

`<data-dir>/up.json` is locked (flock) by the `steer up` that runs on the data dir for as long as
it runs, and holds what others need to know of it: its pid, its bus URL, and the prefix of its
node names and its runtime (to find the containers its nodes made). The kernel drops the lock
when the process ends, however it ends, so a file left behind claims nothing and still tells
`steer down` where the last cluster's containers are; and the kernel's table of locks names the
process that holds it (the one `steer down` signals). The descriptor is not inherited
by children (close-on-exec), or a leftover child would keep the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from bus.errors import SteerError

RECORD = "up.json"
POLL_SECONDS = 0.1


class UpRecord(msgspec.Struct, rename="camel", kw_only=True):
    pid: int
    url: str
    node_prefix: str = "node"
    runtime: str = "auto"


@contextlib.contextmanager
def claim(data_dir: Path, record: UpRecord) -> Iterator[None]:
    """Hold the data dir for `record`'s process; SteerError naming the holder if another has it."""
    fd = os.open(data_dir / RECORD, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder(data_dir)
            who = f"pid {pid}" if pid else "a process this user cannot see"
            raise SteerError(
                f"{data_dir} is in use by another steer up ({who}); "
                f"stop it first (Ctrl-C, or `steer down --data-dir {data_dir}`)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, msgspec.json.encode(record) + b"\n", 0)
        yield
    finally:
        os.close(fd)


def read(data_dir: Path) -> UpRecord | None:
    """The record of the last `steer up` of `data_dir`, running or not; None if there is none."""
    try:
        return msgspec.json.decode((data_dir / RECORD).read_bytes(), type=UpRecord)
    except (OSError, msgspec.DecodeError):
        return None  # never started here, or being written this instant


def is_claimed(data_dir: Path) -> bool:
    """Whether a `steer up` runs on `data_dir` now."""
    try:
        fd = os.open(data_dir / RECORD, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the lock we may have taken
    return False


def holder(data_dir: Path) -> int | None:
    """The pid of the `steer up` that holds `data_dir`, from the kernel's table of locks (the pid
    in the record could be a moment old); None if none holds it, or it cannot be seen."""
    try:
        stat = (data_dir / RECORD).stat()
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in locks:  # "34: FLOCK  ADVISORY  WRITE 4773 fe:00:2146324 0 EOF"
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].isdigit():
            return int(fields[4])
    return None


async def until_released(data_dir: Path) -> None:
    """Until no `steer up` holds `data_dir`."""
    while is_claimed(data_dir):  # noqa: ASYNC110 (flock has no asynchronous wait to hand to an Event)
        await asyncio.sleep(POLL_SECONDS)
