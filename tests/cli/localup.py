"""A real `steer up` for tests: a free port, a temporary data dir, its output read line by line,
its processes found by pid (through /proc, as the kernel sees them)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bus.connection import Credentials
from tests.cli.conftest import steer_command

POLL = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_prefix() -> str:
    """Node names no other cluster on this machine's Docker engine uses."""
    return f"t{uuid.uuid4().hex[:8]}"


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of `pid`: pid -> command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(proc.name)] = command_line(int(proc.name))
    return found


def eventually(condition: Callable[[], bool], *, within: float = 30.0) -> bool:
    """Whether `condition` holds within `within` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


# The admin credential of each cluster a test started, by URL (`steer up` is secure by default).
_admins: dict[str, Path] = {}


def remember(url: str, data_dir: Path) -> None:
    """Let `steer(url, ...)` use the admin credential `steer up` made in `data_dir`."""
    _admins[url] = data_dir / "credentials" / "admin.nk"


def steer(
    url: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEER_NATS": url}
    if url in _admins and _admins[url].exists():
        env["STEER_CREDS"] = str(_admins[url])
    return subprocess.run(
        [*steer_command(), *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )


@dataclass
class LocalUp:
    proc: subprocess.Popen[str]
    data_dir: Path
    port: int
    prefix: str
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def admin(self) -> Credentials:
        """The admin credential `steer up` made (none with --insecure)."""
        path = self.data_dir / "credentials" / "admin.nk"
        return Credentials(creds_file=str(path) if path.exists() else None)

    def read_until(self, fragment: str) -> str:
        """The next line of output that holds `fragment` (bounded by the test's timeout)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"steer up ended before {fragment!r}: {''.join(self.lines)}")

    def children(self) -> dict[int, str]:
        return children_of(self.proc.pid)

    def child(self, marker: str) -> int:
        """The pid of the one child whose command line holds `marker`."""
        pids = [pid for pid, cmdline in self.children().items() if marker in cmdline]
        assert len(pids) == 1, f"{marker!r} in {self.children()}"
        return pids[0]

    def steer(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return steer(self.url, *args, stdin=stdin)


def up_command(data_dir: Path, port: int, *extra: str) -> list[str]:
    return [*steer_command(), "up", "--data-dir", str(data_dir), "--port", str(port), *extra]


@contextlib.contextmanager
def local_up(
    data_dir: Path, *extra: str, nodes: int = 0, runtime: str = "process", port: int = 0, prefix: str = ""
) -> Iterator[LocalUp]:
    """A running `steer up` (until "ready:"); killed, with all it started, if the test leaves it running."""
    prefix = prefix or node_prefix()
    port = port or free_port()
    args = up_command(data_dir, port, "--nodes", str(nodes), "--runtime", runtime, "--node-prefix", prefix)
    args += ["--network", "host"]  # the pod network's tests ask for it in `extra`
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        up = LocalUp(proc, data_dir, port, prefix)
        remember(up.url, data_dir)
        try:
            up.read_until("ready:")
            yield up
        finally:
            if proc.poll() is None:
                orphans = up.children()  # killed with steer up (the kernel's parent-death signal)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                for pid, cmdline in orphans.items():  # and, in case that failed, by us
                    if alive(pid) and command_line(pid) == cmdline:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
