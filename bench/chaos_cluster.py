"""A `steer up` cluster for chaos runs: started as a user starts it, its processes found by their
command lines, killed with SIGKILL, and what its nodes run listed through the runtimes themselves.

The processes are found in /proc rather than taken from `steer up`'s output: what matters is what
runs now, after any number of restarts by the supervisor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEER = Path(sys.executable).parent / "steer"

ROLES = ("nats", "api", "scheduler", "controllers", "nodeagent")
_MODULE_ROLES = {
    "services.api": "api",
    "services.scheduler": "scheduler",
    "services.controllers": "controllers",
    "nodeagent": "nodeagent",
}


@dataclass(frozen=True)
class Proc:
    role: str
    pid: int
    name: str = ""  # the node of a node agent; the identity of a scheduler or controllers replica

    def __str__(self) -> str:
        return f"{self.role}{' ' + self.name if self.name else ''} (pid {self.pid})"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _argv(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:  # gone meanwhile, or not ours to read
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _after(argv: list[str], flag: str) -> str:
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return ""


@dataclass
class UpCluster:
    """`steer up --data-dir DATA --port PORT ...` as a subprocess; `start` returns once it is ready."""

    data: Path
    nodes: int = 3
    runtime: str = "auto"
    api_replicas: int = 2
    standby_replicas: int = 2  # of the scheduler and of the controllers: a leader and a follower
    port: int = field(default_factory=free_port)
    node_prefix: str = "chaos"  # node names no other cluster on this Docker engine uses
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[str] | None = None
    _output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def node_names(self) -> list[str]:
        return [f"{self.node_prefix}-{i + 1}" for i in range(self.nodes)]

    def start(self, *, within: float = 180.0) -> None:
        command = [str(STEER)] if STEER.exists() else [sys.executable, "-m", "cli.main"]
        command += ["up", "--data-dir", str(self.data), "--port", str(self.port)]
        command += ["--nodes", str(self.nodes), "--node-prefix", self.node_prefix, "--runtime", self.runtime]
        command += ["--api-replicas", str(self.api_replicas)]
        command += ["--scheduler-replicas", str(self.standby_replicas)]
        command += ["--controllers-replicas", str(self.standby_replicas), *self.extra]
        command += ["--insecure"]  # the harness connects to the bus itself, without a credential
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "STEER_LOG_LEVEL": "INFO"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(within):
            self.stop()
            raise RuntimeError(f"steer up was not ready within {within:g}s:\n{self.output()}")
        if self.process.poll() is not None:
            raise RuntimeError(f"steer up exited with {self.process.returncode}:\n{self.output()}")

    def _drain(self, ready: threading.Event) -> None:
        """Keep reading steer up's output (a full pipe would stall it), noting the ready line."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            if line.startswith("ready:"):
                ready.set()
        ready.set()  # it ended: let `start` see that

    def output(self) -> str:
        return "".join(self._output)

    def processes(self) -> list[Proc]:
        """Every live process of this cluster, by role."""
        found: list[Proc] = []
        data = str(self.data)
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            argv = _argv(pid)
            if not argv:
                continue
            if os.path.basename(argv[0]) == "nats-server":
                if any(arg.startswith(data) for arg in argv):
                    found.append(Proc("nats", int(pid)))
                continue
            role = _MODULE_ROLES.get(_after(argv, "-m"))
            if role is not None and _after(argv, "--nats").endswith(f":{self.port}"):
                found.append(Proc(role, int(pid), _after(argv, "--name") or _after(argv, "--instance")))
        return sorted(found, key=lambda p: (p.role, p.name, p.pid))

    def kill(self, proc: Proc) -> bool:
        """SIGKILL `proc`; False if it was gone already."""
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def wait_for_roles(self, counts: dict[str, int], *, within: float) -> bool:
        """Until at least `counts` processes of each role run (the supervisor restarted them)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            running = self.processes()
            if all(sum(p.role == role for p in running) >= n for role, n in counts.items()):
                return True
            time.sleep(0.2)  # polling /proc: there is nothing to watch
        return False

    def stop(self, *, within: float = 90.0) -> int | None:
        """Ctrl-C, as a user stops it; the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        code: int | None = self.process.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                code = self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                code = None
        if self._reader is not None:
            self._reader.join(10)  # it ends with the output
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def down(self) -> None:
        """`steer down`: the containers the cluster's nodes made are removed, as a user would."""
        command = [str(STEER)] if STEER.exists() else [sys.executable, "-m", "cli.main"]
        subprocess.run(
            [*command, "down", "--data-dir", str(self.data)], cwd=REPO, capture_output=True, check=False
        )

    def leftovers(self) -> Iterator[Proc]:
        """Processes of this cluster still running (after `stop`, there must be none)."""
        yield from self.processes()
