"""Pod start-up latency on the docker runtime, beside plain `docker run -d` of the same image.

Starts a nats-server, an API server and one node agent (docker runtime) as separate processes.
Each pod is bound to the node in its manifest (no scheduler involved) and its latency is the
time from the create request to the moment a watch sees it Running. Pods are started one after
another (as `docker run -d` is), then 20 at once. The same image (`busybox:local`, built by
scripts/docker-engine) and command are used for `docker run -d --network host`.

    .venv/bin/python bench/pod_startup.py --pods 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.meta import ObjectMeta  # noqa: E402
from bus.resources import Namespace, Node, Pod  # noqa: E402
from bus.resources.pod import Container, PodSpec  # noqa: E402
from bus.store import Store  # noqa: E402

IMAGE = "busybox:local"
COMMAND = ["sleep", "3600"]
NODE = "bench-node"
NAMESPACE = "bench"


def start(module: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=REPO)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class RunningWatch:
    """When each pod was first seen Running, from one watch on the namespace."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.running: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for event in self.store.watch(Pod, NAMESPACE):
            pod = event.object
            if pod is None or pod.metadata.name in self.running:
                continue
            if pod.status.phase == "Running" and all(s.state.running for s in pod.status.container_statuses):
                self.running[pod.metadata.name] = time.perf_counter()
                self.changed.set()

    async def until(self, names: list[str]) -> None:
        while not all(n in self.running for n in names):
            self.changed.clear()
            await self.changed.wait()


async def steersman(
    client: Client, watch: RunningWatch, count: int, prefix: str, *, burst: bool
) -> list[float]:
    def pod(name: str) -> Pod:
        container = Container(name="main", image=IMAGE, command=COMMAND)
        return Pod(
            metadata=ObjectMeta(name=name, namespace=NAMESPACE),
            spec=PodSpec(containers=[container], node_name=NODE, termination_grace_period_seconds=0),
        )

    names = [f"{prefix}-{i}" for i in range(count)]
    created: dict[str, float] = {}
    if burst:
        for name in names:
            created[name] = time.perf_counter()
        await asyncio.gather(*(client.create(pod(name)) for name in names))
        await watch.until(names)
    else:
        for name in names:
            created[name] = time.perf_counter()
            await client.create(pod(name))
            await watch.until([name])
    return [(watch.running[n] - created[n]) * 1000 for n in names]


def docker_run(count: int, *, burst: bool) -> list[float]:
    """`docker run -d` latencies (ms): until the command returns, i.e. the container started."""
    args = ["docker", "run", "-d", "--network", "host", "--label", "steersman.bench=1", IMAGE, *COMMAND]
    latencies = []
    if burst:
        start_at = time.perf_counter()
        procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL) for _ in range(count)]
        for proc in procs:
            proc.wait()
            latencies.append((time.perf_counter() - start_at) * 1000)
    else:
        for _ in range(count):
            began = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def remove_bench_containers() -> None:
    for label in ("steersman.bench=1", f"steersman.io/node={NODE}"):
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
        )
        if ids.stdout.split():
            subprocess.run(["docker", "rm", "-f", *ids.stdout.split()], capture_output=True)


async def run(count: int) -> None:
    remove_bench_containers()
    data = Path(tempfile.mkdtemp(prefix="steer-bench-"))
    server = natsserver.start(data, log_file=data / "nats.log")
    procs = [start("services.api", "--nats", server.url)]
    nc = await connect(server.url, name="bench")
    try:
        client = Client(nc)
        store = Store(nc.jetstream())
        async with asyncio.timeout(30):
            while True:  # the API answers once it has started
                try:
                    await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
                    break
                except SteerError:
                    await asyncio.sleep(0.1)
        procs.append(
            start(
                "nodeagent",
                "--name",
                NODE,
                "--address",
                "127.0.0.1",
                "--runtime",
                "docker",
                "--nats",
                server.url,
                "--data-dir",
                str(data / "nodes"),
            )
        )
        async with asyncio.timeout(30):
            while True:
                try:
                    await client.get(Node, NODE, "")
                    break
                except SteerError:
                    await asyncio.sleep(0.1)
        watch = RunningWatch(store)
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch.run())
            await steersman(client, watch, 2, "warm", burst=False)  # first-use costs out of the figures
            results = {
                "steersman, one at a time": await steersman(client, watch, count, "seq", burst=False),
                "docker run -d, one at a time": docker_run(count, burst=False),
                "steersman, all at once": await steersman(client, watch, count, "burst", burst=True),
                "docker run -d, all at once": docker_run(count, burst=True),
            }
            watcher.cancel()
        print(f"\nPod start-up, {count} pods, docker runtime; {os.cpu_count()} cores")
        print(f"{'':<32}{'p50 ms':>10}{'p99 ms':>10}")
        for name, values in results.items():
            p50, p99 = percentiles(values)
            print(f"{name:<32}{p50:>10.0f}{p99:>10.0f}")
        for mode in ("one at a time", "all at once"):
            (s50, s99), (d50, d99) = (
                percentiles(results[f"{who}, {mode}"]) for who in ("steersman", "docker run -d")
            )
            print(f"steersman / docker run -d, {mode}: p50 x{s50 / d50:.2f}, p99 x{s99 / d99:.2f}")
    finally:
        await nc.close()
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
        server.stop()
        remove_bench_containers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.pods))


if __name__ == "__main__":
    main()
