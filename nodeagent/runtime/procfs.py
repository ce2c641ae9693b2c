"""What the process runtime reads of /proc: which process is which, and what a group uses.

Kept apart from the runtime because it is the one place that knows a Linux file format, and
the runtime's safety rests on it: a container's process is recognised by its pid together with
its start time (field 22 of /proc/<pid>/stat), so a reused pid is never taken for it, nor
signalled; and a container's CPU and memory are summed over its process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat the process runtime uses."""

    state: str
    pgrp: int
    cpu_ticks: int  # utime + stime
    start_ticks: int
    rss_pages: int


def read_stat(pid: int | str) -> Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the rest follows the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return Stat(
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


def host_cpu() -> tuple[int, int]:
    """Busy and total CPU nanoseconds of the whole host since boot, summed over its CPUs
    (first line of /proc/stat; idle and iowait count as not busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user time
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (total - idle) * 1_000_000_000 // _CLOCK_TICKS, total * 1_000_000_000 // _CLOCK_TICKS


def host_memory_used() -> int:
    """Bytes of memory in use on the host: MemTotal less MemAvailable (/proc/meminfo)."""
    values: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "MemAvailable"):
            values[name] = int(rest.split()[0]) * 1024
    return max(values.get("MemTotal", 0) - values.get("MemAvailable", 0), 0)
