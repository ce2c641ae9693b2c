"""Service traffic through a node whose agent is killed: how many requests fail, and for how long,
until the agent started again serves its Service ports.

Everything runs on this machine as separate processes: a nats-server and an API server, three
backends (bench/lb.py's tiny HTTP servers) written as a Service's Endpoints through the API, and
one node agent with its service proxy and `--pods` pods of its own (each a `sleep`), so that a
restarted agent has containers to adopt. A client sends one request every `--interval` (20 ms,
a new connection each) to the node's Service port. Each run kills the agent with SIGKILL and
goes on until the port has served for a second again. Who starts the agent again:

- `--supervisor bench` (the default): this script, `--restart-delay` seconds after the kill
  (a stand-in for any supervisor's delay);
- `--supervisor steer-up`: a real `steer up --nodes 1`, which runs the whole cluster and
  restarts the agent by its own policy (end to end, as a user of `steer up` sees it).

Figures per run, then the median over the runs:
- failed: requests that failed from the kill on;
- gap: from the kill to the first request served again (end to end);
- start-to-serving: from the new agent process's start (its start time in /proc) to the first
  request served: the agent's own time (interpreter, imports, connection, listing Services and
  Endpoints, binding), whatever the supervisor's delay.

    .venv/bin/python bench/agent_restart.py [--runs 5] [--pods 20] [--runtime process|docker|fake]
        [--supervisor bench|steer-up] [--restart-delay 1.0] [--interval 0.02] [--agent-log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lb import BACKENDS, free_port, start, wait_api  # noqa: E402
from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.meta import ObjectMeta, ObjectReference  # noqa: E402
from bus.resources import Endpoints, Namespace, Pod, Service  # noqa: E402
from bus.resources.networking import (  # noqa: E402
    EndpointAddress,
    EndpointPort,
    EndpointSubset,
    ServicePort,
    ServiceSpec,
)
from bus.resources.pod import Container, PodSpec  # noqa: E402
from nodeagent.runtime.containerdir import scan  # noqa: E402
from nodeagent.runtime.procfs import read_stat  # noqa: E402

NAMESPACE = "bench"
BACKEND_HOST = "127.0.0.1"
REQUEST_TIMEOUT = 1.0
SERVED_FOR = 1.0  # a run ends once the port has served this long after the restart
_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def now() -> float:
    """Seconds since boot: the clock of a process's start time in /proc."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(pid: int) -> float:
    stat = read_stat(pid)
    assert stat is not None, f"no process {pid}"
    return stat.start_ticks / _TICKS


@dataclass
class Run:
    failed: int
    gap: float
    start_to_serving: float


class Load:
    """One request every `interval` to the Service port; each request's send time and outcome."""

    def __init__(self, address: str, port: int, interval: float) -> None:
        self.address, self.port, self.interval = address, port, interval
        self.results: list[tuple[float, bool]] = []

    async def run(self) -> None:
        async with asyncio.TaskGroup() as requests:
            while True:
                requests.create_task(self._one(now()))
                await asyncio.sleep(self.interval)

    async def _one(self, sent: float) -> None:
        ok = False
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await asyncio.open_connection(self.address, self.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                ok = (await reader.readline()).startswith(b"HTTP/1.1 200")
                writer.close()
        except (OSError, TimeoutError):
            ok = False
        self.results.append((sent, ok))

    def served_since(self, moment: float) -> float | None:
        """When the first request sent after `moment` was served."""
        return min((sent for sent, ok in self.results if ok and sent >= moment), default=None)

    def serving_since(self, moment: float) -> float | None:
        """When the port began serving for good (for SERVED_FOR) after `moment`, if it has."""
        first = self.served_since(moment)
        if first is None or now() - first < SERVED_FOR:
            return None
        return first if all(ok for sent, ok in self.results if sent >= first) else None


class Agent:
    """The node agent under test: its process, killed by us and started by a supervisor."""

    def __init__(self, find: Callable[[], int | None], restart: Callable[[], None] | None) -> None:
        self.find = find  # the agent's pid now, if it runs
        self.restart = restart  # None: a supervisor of its own starts it again

    def kill(self) -> int:
        pid = self.find()
        assert pid is not None, "no node agent runs"
        os.kill(pid, signal.SIGKILL)
        return pid


async def measure(load: Load, agent: Agent, restart_delay: float) -> Run:
    killed = now()
    dead = agent.kill()
    if agent.restart is not None:
        await asyncio.sleep(restart_delay)
        agent.restart()

    def new_agent() -> int | None:
        pid = agent.find()
        return pid if pid != dead else None

    async with asyncio.timeout(120):
        pid = await polled(new_agent, 0.01)
        started = started_at(pid)
        first = await polled(lambda: load.serving_since(started), 0.1)
    failed = sum(1 for sent, ok in load.results if sent >= killed and not ok)
    return Run(failed=failed, gap=first - killed, start_to_serving=first - started)


async def polled(value: Callable[[], T | None], every: float) -> T:
    """The value once there is one, asked every `every` seconds (a process start or a served
    request has no event to wait on here)."""
    for _ in itertools.count():
        if (found := value()) is not None:
            return found
        await asyncio.sleep(every)
    raise AssertionError("unreachable")


async def bench(args: argparse.Namespace, agent: Agent, address: str, service_port: int) -> list[Run]:
    load = Load(address, service_port, args.interval)
    runs: list[Run] = []
    async with asyncio.TaskGroup() as group:
        loading = group.create_task(load.run())
        for i in range(args.runs):
            await asyncio.sleep(1.0)  # steady traffic first
            run = await measure(load, agent, args.restart_delay)
            runs.append(run)
            print(
                f"run {i + 1}: {run.failed} failed, gap {run.gap:.2f}s, "
                f"agent start to serving {run.start_to_serving:.2f}s",
                flush=True,
            )
        loading.cancel()
    return runs


# -- the cluster


async def populate(url: str, node: str, backends: list[int], service_port: int, pods: int) -> None:
    """The Service (Endpoints: the backends) and `pods` pods on the node, once all run."""
    nc = await connect(url, name="bench-agent-restart")
    try:
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        # No selector: its Endpoints are ours to write (the endpoints controller of `steer up`
        # leaves them alone), and name the backends outside the cluster.
        spec = ServiceSpec(ports=[ServicePort(name="http", port=service_port)])
        await client.create(Service(metadata=ObjectMeta(name="web", namespace=NAMESPACE), spec=spec))
        subsets = [
            EndpointSubset(
                addresses=[
                    EndpointAddress(
                        ip=BACKEND_HOST, target_ref=ObjectReference(kind="Pod", name=f"backend-{i}")
                    )
                ],
                ports=[EndpointPort(name="http", port=port)],
            )
            for i, port in enumerate(backends)
        ]
        await client.create(Endpoints(metadata=ObjectMeta(name="web", namespace=NAMESPACE), subsets=subsets))
        for i in range(pods):
            container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
            pod = Pod(
                metadata=ObjectMeta(name=f"pod-{i}", namespace=NAMESPACE),
                spec=PodSpec(containers=[container], node_name=node),
            )
            await client.create(pod)
        async with asyncio.timeout(120):
            for _ in itertools.count():  # a bench: asking the API now and then is fine
                if sum(p.status.phase == "Running" for p in await client.list(Pod, NAMESPACE)) == pods:
                    break
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def until_served(address: str, port: int) -> None:
    load = Load(address, port, 0.05)
    async with asyncio.timeout(60):
        for _ in itertools.count():
            await load._one(now())
            if load.served_since(0.0) is not None:
                return
            await asyncio.sleep(0.05)


def agent_pid(marker: str) -> int | None:
    """The pid of the node agent whose command line holds `marker`."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"nodeagent" in args and marker.encode() in b" ".join(args):
                stat = read_stat(cmdline.parent.name)
                if stat is not None and stat.state not in "ZX":
                    return int(cmdline.parent.name)
    return None


def remove_pods(runtime: str, node: str, root: Path) -> None:
    """The node's containers outlive its agent (by design, for adoption): end them."""
    if runtime == "docker":
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=steersman.io/node={node}"],
            capture_output=True,
            text=True,
        )
        if ids := listed.stdout.split():
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
        return
    for _, state in scan(root) if root.is_dir() else []:
        stat = read_stat(state.pid)
        if stat is not None and stat.start_ticks == state.start_ticks:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)


def agent_command(args: argparse.Namespace, node: str, url: str, data: Path) -> list[str]:
    command = [sys.executable, "-m", "nodeagent", "--name", node, "--address", BACKEND_HOST]
    command += [
        "--runtime",
        args.runtime,
        "--nats",
        url,
        "--metrics-interval",
        "0.5",
        "--data-dir",
        str(data),
    ]
    return command


@contextlib.contextmanager
def bench_supervised(args: argparse.Namespace, tmp: Path, node: str) -> Iterator[tuple[str, str, Agent]]:
    """nats-server, the API and the agent, started by this script: (bus url, node address, agent)."""
    server = natsserver.start(tmp / "nats")
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp / "agent.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}

    def start_agent() -> None:
        with open(log, "ab") as out:
            procs.append(
                subprocess.Popen(
                    agent_command(args, node, server.url, tmp / "nodes"),
                    env=env,
                    cwd=REPO,
                    stdout=out,
                    stderr=out,
                )
            )

    try:
        procs.append(start("-m", "services.api", "--nats", server.url))
        asyncio.run(wait_api(server.url))
        start_agent()
        yield server.url, BACKEND_HOST, Agent(lambda: agent_pid(f"--name {node} "), start_agent)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if args.agent_log is not None and log.exists():
            args.agent_log.write_bytes(log.read_bytes())
        server.stop()


@contextlib.contextmanager
def up_supervised(args: argparse.Namespace, tmp: Path, node: str) -> Iterator[tuple[str, str, Agent]]:
    """A whole `steer up --nodes 1`: (bus url, node address, agent)."""
    port = free_port()
    prefix = node.rsplit("-", 1)[0]
    command = [sys.executable, "-m", "cli.main", "up", "--data-dir", str(tmp), "--port", str(port)]
    # --insecure: this measures a restart, and connects to the bus without a credential.
    command += ["--nodes", "1", "--runtime", args.runtime, "--node-prefix", prefix, "--insecure"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    up = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("ready:"):
                break
        else:
            raise RuntimeError("steer up ended before it was ready")
        yield f"nats://127.0.0.1:{port}", "127.0.0.11", Agent(lambda: agent_pid(f"--name {node} "), None)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()  # the kernel ends what it started (steer up ties its children to itself)
            up.wait()
        if args.agent_log is not None:
            with contextlib.suppress(OSError):
                args.agent_log.write_bytes((tmp / "logs" / f"{node}.log").read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pods", type=int, default=20, help="pods of the node, adopted at each restart")
    parser.add_argument("--runtime", choices=["process", "docker", "fake"], default="process")
    parser.add_argument("--supervisor", choices=["bench", "steer-up"], default="bench")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="--supervisor bench: seconds")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between requests")
    parser.add_argument("--agent-log", type=Path, help="keep the agent's log (INFO, timed) in this file")
    args = parser.parse_args()
    backends = [free_port() for _ in range(BACKENDS)]
    service_port = free_port()
    node = f"bench{uuid.uuid4().hex[:6]}-1"
    cluster = up_supervised if args.supervisor == "steer-up" else bench_supervised
    served = start(str(REPO / "bench" / "lb.py"), "backends", *map(str, backends), stdout=subprocess.PIPE)
    with tempfile.TemporaryDirectory(prefix="steer-agent-restart-") as tmp:
        try:
            assert served.stdout is not None and served.stdout.readline().strip() == b"ready"
            try:
                with cluster(args, Path(tmp), node) as (url, address, agent):
                    asyncio.run(populate(url, node, backends, service_port, args.pods))
                    asyncio.run(until_served(address, service_port))
                    report(args, asyncio.run(bench(args, agent, address, service_port)))
            finally:  # once the agent is stopped, so that it does not start them again
                remove_pods(args.runtime, node, Path(tmp) / "nodes" / node)
        finally:
            served.terminate()
            served.wait(10)


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    who = (
        "steer up"
        if args.supervisor == "steer-up"
        else f"this script, {args.restart_delay:g}s after each kill"
    )
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (other work on the machine)")
    print(
        f"node agent ({args.runtime} runtime, {args.pods} pods) proxying to {BACKENDS} backends; "
        f"a request every {args.interval * 1000:g} ms; restarted by {who}"
    )
    print(
        f"median of {len(runs)}: {statistics.median(r.failed for r in runs):g} failed, "
        f"gap {statistics.median(r.gap for r in runs):.2f}s, "
        f"agent start to serving {statistics.median(r.start_to_serving for r in runs):.2f}s"
    )


if __name__ == "__main__":
    main()
