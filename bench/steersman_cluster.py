"""A steersman cluster for bench/vs_swarm.py: nats-server, API, scheduler, controllers and one node
agent (docker runtime), each its own process, as tests/cluster.py starts them.

Start and stop are blocking and idempotent, so that an interrupted bench can still stop every
process it started and remove the containers of its node (and only those: label
steersman.io/node=<node>).
"""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.cpu_usage import cpu_seconds  # noqa: E402
from bus import natsserver  # noqa: E402
from nodeagent.runtime.base import LABEL_NODE  # noqa: E402

SERVICES = ("api", "scheduler", "controllers")


@dataclass
class Cluster:
    data: Path
    node: str
    address: str = "127.0.0.1"
    pods: int = 250
    profile: bool = False
    server: natsserver.NatsServer | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None, "the cluster is not started"
        return self.server.url

    def start(self) -> None:
        self.server = natsserver.start(self.data / "nats", log_file=self.data / "nats.log")
        for service in SERVICES:
            self._start(service, f"services.{service}", "--nats", self.url)
        agent = ["--name", self.node, "--address", self.address, "--runtime", "docker"]
        agent += ["--nats", self.url, "--data-dir", str(self.data / "nodes")]
        agent += ["--capacity", f"pods={self.pods}"]  # defaults otherwise: a first restart is at once
        self._start("node agent", "nodeagent", *agent)

    def _start(self, name: str, module: str, *args: str) -> None:
        env = {"STEER_LOG_LEVEL": "WARNING", **os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", module, *args]
        if self.profile:
            command[1:1] = ["-m", "cProfile", "-o", str(self.profile_path(name))]
        with open(self.data / f"{name.replace(' ', '-')}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def profile_path(self, name: str) -> Path:
        return self.data / f"{name.replace(' ', '-')}.prof"

    def exited(self) -> list[str]:
        """Processes that are no longer running (each has a log in the data directory)."""
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def cpu_seconds(self) -> dict[str, float]:
        used = {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}
        if self.server is not None:
            used["nats-server"] = cpu_seconds(self.server.process.pid)
        return used

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"warning: {name} did not stop within 30s of SIGTERM; killed", file=sys.stderr)
                proc.kill()
                proc.wait()
        if self.server is not None:
            self.server.stop()
        remove_containers(self.node)

    def print_profiles(self, top: int = 15) -> None:
        for name in self.procs:
            path = self.profile_path(name)
            if path.exists():
                print(f"\n{name} profile (cumulative time, top {top}):")
                pstats.Stats(str(path)).sort_stats("cumulative").print_stats(top)


def remove_containers(node: str) -> None:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_NODE}={node}"], capture_output=True, text=True
    )
    if ids := listed.stdout.split():
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
