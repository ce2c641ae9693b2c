"""What bench/lb.py loads, and the load itself: `wrk` (Debian package `wrk`) as a separate process,
optionally inside a pod's network namespace.

A `Target` is a direct address (one backend) and balanced ones (ClusterIPs, or the userspace
proxy's port), each with the command prefix that puts the load generator where the clients of
the cluster are (`nsenter --net=/run/netns/steer-<pod uid>`), and a way to read how many
requests each backend has served.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    address: str  # host:port
    enter: tuple[str, ...] = ()  # prefix of the load generator's command


@dataclass(frozen=True)
class Target:
    description: str
    paths: dict[str, Route]  # the first is "direct" (one backend)
    balanced: str  # the name of the path over every backend (its new-connection run: fairness)
    counts: Callable[[], list[int]]  # requests served so far, per backend


@dataclass(frozen=True)
class Load:
    rps: float
    p99_ms: float
    errors: int  # socket errors (connect, read, write, timeout) and non-2xx answers


def ensure_wrk() -> str:
    """wrk's path; installed from Debian when missing and we are root, else exit non-zero."""
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
        if found := shutil.which("wrk"):
            return found
    sys.exit(
        "wrk not found: install it (Debian/Ubuntu: `apt-get install wrk`; or build it from "
        "https://github.com/wg/wrk and put it on PATH), then run this again"
    )


def run_wrk(wrk: str, route: Route, *, connections: int, threads: int, seconds: float, close: bool) -> Load:
    command = [*route.enter, wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if close:
        command += ["-H", "Connection: close"]
    command.append(f"http://{route.address}/")
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse(out: str) -> Load:
    """Requests/sec, the 99th percentile of latency and the errors from wrk's `--latency` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    if non2xx := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(non2xx.group(1))
    return Load(float(rps.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], errors)
