"""A cluster whose nodes are separate hosts: the bus on a host of its own, each node agent on
another, joined by real links (tests/netns.py), so that node traffic crosses a link a test can
cut.

- The bus host runs the NATS servers, from any list of commands (`ServerCommand`: the command
  and the URL clients reach it at; `single_server` makes one, a cluster generator makes three),
  and the API, the scheduler and the controllers, which reach the servers inside that host.
- Each node host runs one node agent, given the servers' URLs with `--nats`, and its pods: with
  the process runtime they are processes inside the node's namespace, on the node's address.
- The test process reaches the bus through a link of its own (`connect()`).

    with HostCluster.running(tmp_path) as cluster:
        cluster.start_scheduler()
        cluster.start_controllers("--node-grace", "5")
        agent = cluster.start_agent()
        async with cluster.connect() as (client, store): ...
        await asyncio.to_thread(cluster.net.cut, agent.host)

On every way out, every process started (servers, services, agents and their pods) is killed
and every namespace and link removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bus import natsserver
from bus.client import Client
from bus.connection import connect, discover
from bus.containerlabels import LABEL_NODE, LABEL_POD_UID
from bus.errors import Unavailable
from bus.meta import ObjectMeta
from bus.resources import Namespace
from bus.store import Store
from nodeagent.runtime.containerdir import scan
from nodeagent.runtime.procfs import read_stat
from tests.agents import remove_containers
from tests.netns import Host, Network, sweep

REPO = Path(__file__).resolve().parent.parent
NATS_PORT = 4222  # the bus host is a host of its own: the standard port is free there
_NODE_NAME = re.compile(r"^h([0-9a-f]{6})-n\d+$")  # as start_agent names them
STOP_WITHIN = 5.0  # seconds a group of processes is given to end after SIGTERM


@dataclass(frozen=True)
class ServerCommand:
    """A NATS server to run on the bus host: its command line, and where clients reach it."""

    argv: list[str]
    url: str


def single_server(bus: Host, data: Path) -> list[ServerCommand]:
    """One nats-server with JetStream, listening on every address of the bus host."""
    natsserver.prepare(data)
    argv = natsserver.command(data, port=NATS_PORT, host="0.0.0.0")
    return [ServerCommand(argv, f"nats://{bus.address}:{NATS_PORT}")]


Servers = Callable[[Host, Path], list[ServerCommand]]


@dataclass
class NodeAgent:
    name: str
    host: Host
    runtime: str
    data_dir: Path  # the process runtime's files of this node
    log: Path
    proc: subprocess.Popen[bytes]


@dataclass
class HostCluster:
    net: Network
    tmp: Path
    urls: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # all, servers included
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: list[NodeAgent] = field(default_factory=list)

    @property
    def nats(self) -> str:
        return ",".join(self.urls)

    @classmethod
    @contextlib.contextmanager
    def running(cls, tmp: Path, *, servers: Servers = single_server) -> Iterator[HostCluster]:
        """The bus host with its servers and one API replica, ready to answer."""
        _sweep_containers(sweep())
        with Network.created() as net:
            cluster = cls(net, tmp)
            try:
                cluster._start_bus(servers(net.bus, tmp / "nats"))
                cluster.start_service("services.api")
                asyncio.run(_wait_for_api(cluster.nats))
                yield cluster
            finally:
                cluster._stop()

    def _start_bus(self, commands: list[ServerCommand]) -> None:
        for number, server in enumerate(commands):
            self.servers.append(self.net.bus.popen(server.argv, log=self.tmp / f"nats-{number}.log"))
            self.urls.append(server.url)
        self.procs += self.servers
        asyncio.run(_wait_for_servers(self.urls, self.procs))

    def start_service(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        """A control-plane service on the bus host."""
        name = module.rsplit(".", 1)[-1]
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        proc = self.net.bus.popen(_python(module, "--nats", self.nats, *args), log=log, env=_env(), cwd=REPO)
        self.procs.append(proc)
        return proc

    def start_scheduler(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start_service("services.scheduler", *args)

    def start_controllers(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start_service("services.controllers", "--lease", "4,1", *args)

    def start_agent(self, *extra: str, runtime: str = "process") -> NodeAgent:
        """A node agent on a new node host of its own, reaching the bus over its link."""
        host = self.net.add_node()
        name = f"h{self.net.tag}-{host.name}"  # unique: a Docker engine may be shared
        data = self.tmp / "nodes"
        args = ["--name", name, "--address", host.address, "--runtime", runtime, "--nats", self.nats]
        args += ["--backoff", "0.5,4,60", "--resync", "5", "--data-dir", str(data)]
        args += ["--network", "host", *extra]  # the pod network's tests ask for it in `extra`
        log = self.tmp / f"agent-{name}.log"
        proc = host.popen(_python("nodeagent", *args), log=log, env=_env(), cwd=REPO)
        self.procs.append(proc)
        agent = NodeAgent(name, host, runtime, data / name, log, proc)
        self.agents.append(agent)
        return agent

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Client, Store]]:
        """The test's own connection, over its link to the bus host."""
        nc = await connect(self.nats, name="test")
        try:
            yield Client(nc), Store(nc.jetstream())
        finally:
            await nc.close()

    @staticmethod
    async def namespace(client: Client) -> str:
        name = f"t-{secrets.token_hex(4)}"
        await client.create(Namespace(metadata=ObjectMeta(name=name)))
        return name

    def _stop(self) -> None:
        """Agents, then services, then servers: SIGTERM and a moment to end (every link healed
        first, so that no agent spends it draining into a cut); then the namespaces go with
        whatever still runs in them (pods of the process runtime included)."""
        for node in self.net.nodes:
            with contextlib.suppress(Exception):  # a node half made, or its namespace gone
                self.net.heal(node)
        services = [p for p in self.procs if p not in self.servers]
        for group in ([a.proc for a in self.agents], services, self.servers):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + STOP_WITHIN
            for proc in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(deadline - time.monotonic(), 0.01))
        self.net.destroy()
        for proc in self.procs:
            proc.wait()  # killed with its namespace; reaped here
        for agent in self.agents:
            if agent.runtime == "docker":  # its containers run in the engine's namespace
                remove_containers(agent.name)


def pod_containers(agent: NodeAgent) -> dict[str, int]:
    """The containers that run now on the agent's node, as the runtime (not the agent) knows
    them: pod uid -> how many."""
    return _pod_processes(agent) if agent.runtime == "process" else _docker_containers(agent.name)


def _pod_processes(agent: NodeAgent) -> dict[str, int]:
    """Live processes of the process runtime (by pid and start time, as it knows them) inside
    the node's namespace."""
    inode = agent.host.inode()
    running: Counter[str] = Counter()
    for _, state in scan(agent.data_dir) if agent.data_dir.is_dir() else []:
        stat = read_stat(state.pid)
        if stat is None or stat.start_ticks != state.start_ticks:
            continue
        try:
            if os.stat(f"/proc/{state.pid}/ns/net").st_ino != inode:
                continue
        except OSError:
            continue  # ended meanwhile
        running[state.labels.get(LABEL_POD_UID, "")] += 1
    return dict(running)


def _docker_containers(node: str) -> dict[str, int]:
    listed = subprocess.run(
        ["docker", "ps", "--filter", f"label={LABEL_NODE}={node}", "--format", _label(LABEL_POD_UID)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(Counter(listed.stdout.split()))


def _label(name: str) -> str:
    """A `docker ps --format` template printing one label of each container."""
    return f'{{{{.Label "{name}"}}}}'


def _sweep_containers(live_tags: set[str]) -> None:
    """Remove the Docker containers of node agents of crashed runs (their nodes' names carry
    the run's tag; a container outlives its namespace, it runs in the engine's)."""
    try:
        listed = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label={LABEL_NODE}", "--format", _label(LABEL_NODE)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # no engine: nothing of ours can run there
    for node in set(listed.stdout.split()):
        match = _NODE_NAME.match(node)
        if match is not None and match.group(1) not in live_tags:
            remove_containers(node)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}


async def _wait_for_servers(
    urls: list[str], procs: list[subprocess.Popen[bytes]], within: float = 30
) -> None:
    """Until a client on the machine's side of the link can connect to every server."""
    deadline = time.monotonic() + within
    for url in urls:
        while True:
            try:
                nc = await connect(url, name="test-wait", connect_timeout=1.0)
            except Unavailable:
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)  # a server starting: nothing to wait on but its port
                continue
            await nc.close()
            break


async def _wait_for_api(nats: str, within: float = 30) -> None:
    nc = await connect(nats, name="test-wait")
    try:
        async with asyncio.timeout(within):
            while not [c for c in await discover(nc, wait=0.3) if c.name == "steer-api"]:
                pass
    finally:
        await nc.close()
