"""Service traffic through a node whose agent is killed: how many requests fail, and for how long,
until the agent started again serves its Service ports.

Everything runs on this machine as separate processes: a nats-server, an API server, three
backends (bench/lb.py's tiny HTTP servers) written as a Service's Endpoints through the API, and
one node agent with its service proxy and `--pods` pods of its own (each a `sleep`), so that a
restarted agent has containers to adopt. A client sends one request every `--interval` (20 ms,
a new connection each) to the node's Service port. Each run kills the agent with SIGKILL, waits
`--restart-delay` seconds (a supervisor's restart delay: `steer up` has its own, which is why
the agent's own time is reported apart), starts it again, and goes on until the port has served
for a second.

Figures per run, then the median over the runs:
- failed: requests that failed from the kill on;
- gap: from the kill to the first request served again (end to end, restart delay included);
- start-to-serving: from the new agent's process start to the first request served (the
  agent's own time: interpreter, imports, connection, listing Services and Endpoints, binding).

    .venv/bin/python bench/agent_restart.py [--runs 3] [--pods 20] [--runtime process|docker|fake]
                                            [--restart-delay 1.0] [--interval 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lb import BACKENDS, HOST, free_port, publish_service, start, wait_api  # noqa: E402
from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.meta import ObjectMeta  # noqa: E402
from bus.resources import Pod  # noqa: E402
from bus.resources.pod import Container, PodSpec  # noqa: E402
from nodeagent.runtime.containerdir import scan  # noqa: E402
from nodeagent.runtime.procfs import read_stat  # noqa: E402

NODE = "lb-node"  # the node bench/lb.py's publish_service waits for
NAMESPACE = "lb"
REQUEST_TIMEOUT = 1.0
SERVED_FOR = 1.0  # a run ends once the port has served this long after the restart


@dataclass
class Run:
    failed: int
    gap: float
    start_to_serving: float


class Load:
    """One request every `interval` to the Service port; each request's send time and outcome."""

    def __init__(self, port: int, interval: float) -> None:
        self.port, self.interval = port, interval
        self.results: list[tuple[float, bool]] = []

    async def run(self) -> None:
        async with asyncio.TaskGroup() as requests:
            while True:
                requests.create_task(self._one(time.monotonic()))
                await asyncio.sleep(self.interval)

    async def _one(self, sent: float) -> None:
        ok = False
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                ok = (await reader.readline()).startswith(b"HTTP/1.1 200")
                writer.close()
        except (OSError, TimeoutError):
            ok = False
        self.results.append((sent, ok))

    def served_since(self, moment: float) -> float | None:
        """When the first request sent after `moment` was served."""
        return min((sent for sent, ok in self.results if ok and sent >= moment), default=None)


async def measure(load: Load, agent: Agent, restart_delay: float) -> Run:
    killed = time.monotonic()
    agent.kill()
    await asyncio.sleep(restart_delay)
    started = time.monotonic()
    agent.start()
    async with asyncio.timeout(120):
        while True:
            await asyncio.sleep(0.1)
            first = load.served_since(started)
            if (
                first is not None
                and all(ok for sent, ok in load.results if sent >= first)
                and (time.monotonic() - first >= SERVED_FOR)
            ):
                break
    assert first is not None
    failed = sum(1 for sent, ok in load.results if sent >= killed and not ok)
    return Run(failed=failed, gap=first - killed, start_to_serving=first - started)


@dataclass
class Agent:
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nodeagent", *self.args], env=env, cwd=REPO, stdout=out, stderr=out
            )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


async def create_pods(url: str, count: int) -> None:
    """`count` pods on the node, once all run (the listing a restarted agent adopts)."""
    nc = await connect(url, name="bench-agent-restart")
    try:
        client = Client(nc)
        for i in range(count):
            container = Container(name="main", image="busybox:local", command=["sleep", "3600"])
            spec = PodSpec(containers=[container], node_name=NODE)
            await client.create(Pod(metadata=ObjectMeta(name=f"pod-{i}", namespace=NAMESPACE), spec=spec))
        async with asyncio.timeout(120):
            while True:
                pods = await client.list(Pod, NAMESPACE)
                if sum(p.status.phase == "Running" for p in pods) == count:
                    return
                await asyncio.sleep(0.2)  # a bench: polling the API now and then is fine
    finally:
        await nc.close()


def remove_pods(runtime: str, root: Path) -> None:
    """The node's containers outlive its agent (by design, for adoption): end them."""
    if runtime == "docker":
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=steersman.io/node={NODE}"],
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


async def bench(args: argparse.Namespace, url: str, agent: Agent, service_port: int) -> list[Run]:
    load = Load(service_port, args.interval)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pods", type=int, default=20, help="pods of the node, adopted at each restart")
    parser.add_argument("--runtime", choices=["process", "docker", "fake"], default="process")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="seconds before the restart")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between requests")
    parser.add_argument("--agent-log", type=Path, help="keep the agent's log (INFO, timed) in this file")
    args = parser.parse_args()
    ports = [free_port() for _ in range(BACKENDS)]
    service_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="steer-agent-restart-") as tmp:
        server = natsserver.start(Path(tmp) / "nats")
        data = Path(tmp) / "nodes"
        agent_args = ["--name", NODE, "--address", HOST, "--runtime", args.runtime, "--nats", server.url]
        agent_args += ["--metrics-interval", "0.5", "--data-dir", str(data)]
        agent = Agent(agent_args, Path(tmp) / "agent.log")
        try:
            backends = start(
                str(REPO / "bench" / "lb.py"), "backends", *map(str, ports), stdout=subprocess.PIPE
            )
            procs.append(backends)
            assert backends.stdout is not None and backends.stdout.readline().strip() == b"ready"
            procs.append(start("-m", "services.api", "--nats", server.url))
            asyncio.run(wait_api(server.url))
            agent.start()
            asyncio.run(publish_service(server.url, ports, service_port))
            asyncio.run(create_pods(server.url, args.pods))
            print(
                f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (other work on the machine)"
            )
            print(
                f"node agent ({args.runtime} runtime, {args.pods} pods) proxying {HOST}:{service_port} "
                f"to {BACKENDS} backends; a request every {args.interval * 1000:g} ms; "
                f"restarted {args.restart_delay:g}s after each SIGKILL"
            )
            runs = asyncio.run(bench(args, server.url, agent, service_port))
            print(
                f"median of {len(runs)}: {statistics.median(r.failed for r in runs):g} failed, "
                f"gap {statistics.median(r.gap for r in runs):.2f}s, "
                f"agent start to serving {statistics.median(r.start_to_serving for r in runs):.2f}s"
            )
        finally:
            agent.stop()
            if args.agent_log is not None:
                args.agent_log.write_bytes(agent.log.read_bytes())
            remove_pods(args.runtime, data / NODE)
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            server.stop()


if __name__ == "__main__":
    main()
