"""CPU accounting for benchmarks: per process (from /proc/<pid>/stat) and for the whole machine
(from /proc/stat), which says where a run's time went and whether the machine was saturated."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(names: tuple[str, ...]) -> dict[str, int]:
    """The processes whose command name is one of `names` (the last one found of each)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm in names:
                    found[comm] = int(entry.name)
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks over all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)
