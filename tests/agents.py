"""Node agents as real processes against the session's control plane (any runtime)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bus.meta import is_true
from bus.resources import Node
from bus.store import Store
from nodeagent.runtime.containerdir import scan
from nodeagent.runtime.procfs import read_stat
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
_addresses = itertools.count(2)
_subnet = 20 + os.getpid() % 200


def node_ready(node: Node) -> bool:
    return is_true(node.status.conditions)


@dataclass
class AgentProcess:
    name: str
    address: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nodeagent", *self.args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def network(self) -> str:
        """The --network it was given last (argparse's rule)."""
        given = [value for flag, value in zip(self.args, self.args[1:], strict=False) if flag == "--network"]
        return given[-1] if given else "auto"

    @property
    def data_dir(self) -> Path:
        """Where this agent's process runtime keeps its containers' files."""
        return Path(self.args[self.args.index("--data-dir") + 1]) / self.name

    def kill(self) -> None:
        """SIGKILL: the agent dies without cleaning anything up."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the agent freezes (no renewal, no status), its containers run on."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


StartAgent = Callable[..., Any]


@pytest.fixture
async def start_agent(
    nats_url: str, api_servers: object, store: Store, tmp_path: Path
) -> AsyncIterator[StartAgent]:
    """Start a node agent; returns once its Node is Ready. Stops them and their containers after."""
    agents: list[AgentProcess] = []

    async def start(
        runtime: str = "docker", *, extra: tuple[str, ...] = (), wait: bool = True
    ) -> AgentProcess:
        name = f"n{uuid.uuid4().hex[:8]}"
        address = f"127.0.{_subnet}.{next(_addresses)}"
        args = ["--name", name, "--address", address, "--runtime", runtime, "--nats", nats_url]
        args += ["--backoff", "0.5,4,60", "--resync", "5", "--data-dir", str(tmp_path / "nodes")]
        args += ["--network", "host", *extra]  # the pod network's tests ask for it in `extra`
        agent = AgentProcess(name, address, args, tmp_path / f"{name}.log")
        agent.start()
        agents.append(agent)
        if wait:
            await wait_for(store, Node, "", name, node_ready)
        return agent

    yield start
    for agent in agents:
        agent.stop()
    for agent in agents:
        clean_up(agent)


def clean_up(agent: AgentProcess) -> None:
    """Remove what the agent's pods left running: Docker containers and process-runtime processes
    (both outlive an agent by design, for the next one to adopt)."""
    remove_containers(agent.name)
    kill_processes(agent.data_dir)
    if agent.network != "host" and os.geteuid() == 0:  # `auto` is the pod network as root
        remove_network(agent)


def remove_network(agent: AgentProcess) -> None:
    """What `steer down` does for a node on the pod network: the agent's own clean-up."""
    args = ["--name", agent.name, "--data-dir", str(agent.data_dir.parent), "--clean-up"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "nodeagent", *args], cwd=REPO, env=env, capture_output=True, check=True
    )


def kill_processes(root: Path) -> None:
    """SIGKILL every process-runtime container under `root` that still runs (recognised by pid
    and start time, as the runtime recognises them)."""
    for _, state in scan(root) if root.is_dir() else []:
        stat = read_stat(state.pid)
        if stat is not None and stat.start_ticks == state.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)


def remove_containers(node: str) -> None:
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=steersman.io/node={node}"], capture_output=True, text=True
    )
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
