"""Scheduler throughput on hollow nodes (fake runtime), with created-to-Running latency.

Starts a nats-server, two API replicas, one scheduler and one process of hollow node agents
(`--hollow N --runtime fake`), waits until every node is Ready, then creates the pods (unbound)
as fast as the API takes them. Reports pods bound per second (first create to last bind), the
created-to-bound and created-to-Running p50/p99 (seen through a watch), and the CPU seconds each
process used, which says where the time went. `--profile` also runs the scheduler under cProfile
and prints its top functions.

    .venv/bin/python bench/scheduler_throughput.py --nodes 1000 --pods 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
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
from bus.meta import ObjectMeta  # noqa: E402
from bus.resources import Namespace, Node, Pod  # noqa: E402
from bus.resources.pod import Container, PodSpec, ResourceRequirements  # noqa: E402
from bus.store import Store  # noqa: E402

NAMESPACE = "bench"
CREATES_IN_FLIGHT = 128


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "WARNING"}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def wait_nodes(store: Store, count: int) -> float:
    began = time.perf_counter()
    ready: set[str] = set()
    async for event in store.watch(Node):
        node = event.object
        if node is not None and any(c.type == "Ready" and c.status == "True" for c in node.status.conditions):
            ready.add(node.metadata.name)
        if len(ready) >= count:
            return time.perf_counter() - began
    raise RuntimeError("watch ended")


async def run(nodes: int, pods: int, profile: bool) -> None:
    data = Path(tempfile.mkdtemp(prefix="steer-bench-"))
    server = natsserver.start(data, log_file=data / "nats.log")
    url = server.url
    procs: dict[str, subprocess.Popen[bytes]] = {
        f"api-{i}": start(["-m", "services.api", "--nats", url], data / f"api-{i}.log") for i in range(2)
    }
    nc = await connect(url, name="bench")
    try:
        client, store = Client(nc, timeout=60), Store(nc.jetstream(timeout=30))
        async with asyncio.timeout(60):
            while True:
                try:
                    await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
                    break
                except Exception:  # the API is still starting
                    await asyncio.sleep(0.2)
        hollow = [
            "-m",
            "nodeagent",
            "--name",
            "hollow",
            "--hollow",
            str(nodes),
            "--runtime",
            "fake",
            "--nats",
            url,
        ]
        hollow += ["--capacity", "cpu=32,memory=64Gi,pods=110", "--lease", "3600,600", "--resync", "3600"]
        procs["hollow agents"] = start([*hollow, "--data-dir", str(data / "nodes")], data / "hollow.log")
        startup = await wait_nodes(store, nodes)
        print(f"{nodes} hollow nodes Ready in {startup:.1f}s")
        scheduler = ["-m", "services.scheduler", "--nats", url]
        if profile:
            scheduler = ["-m", "cProfile", "-o", str(data / "scheduler.prof"), *scheduler]
        procs["scheduler"] = start(scheduler, data / "scheduler.log")
        before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        server_before = cpu_seconds(server.process.pid)

        created: dict[str, float] = {}
        bound: dict[str, float] = {}
        running: dict[str, float] = {}
        all_running = asyncio.Event()

        async def watch() -> None:
            async for event in store.watch(Pod, NAMESPACE):
                pod = event.object
                if pod is None:
                    continue
                name = pod.metadata.name
                if pod.spec.node_name and name not in bound:
                    bound[name] = time.perf_counter()
                if pod.status.phase == "Running" and name not in running:
                    running[name] = time.perf_counter()
                    if len(running) == pods:
                        all_running.set()

        slots = asyncio.Semaphore(CREATES_IN_FLIGHT)

        async def create(i: int) -> None:
            container = Container(
                name="c", image="hollow", resources=ResourceRequirements(requests={"cpu": "10m"})
            )
            pod = Pod(
                metadata=ObjectMeta(name=f"p{i}", namespace=NAMESPACE), spec=PodSpec(containers=[container])
            )
            async with slots:
                created[pod.metadata.name] = time.perf_counter()
                await client.create(pod)

        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch())
            await asyncio.sleep(1.0)  # the scheduler's informers list and sync
            began = time.perf_counter()
            for i in range(pods):
                tasks.create_task(create(i))
            await all_running.wait()
            watcher.cancel()
        done = time.perf_counter()
        used = {name: cpu_seconds(p.pid) - before[name] for name, p in procs.items()}
        used["nats-server"] = cpu_seconds(server.process.pid) - server_before

        last_create = max(created.values()) - began
        last_bind = max(bound.values()) - began
        to_bind = [(bound[n] - created[n]) * 1000 for n in created]
        to_run = [(running[n] - created[n]) * 1000 for n in created]
        print(f"\n{pods} pods on {nodes} hollow nodes; {os.cpu_count()} cores")
        print(f"created all in {last_create:.1f}s ({pods / last_create:.0f} creates/s)")
        print(
            f"bound all in {last_bind:.1f}s: {pods / last_bind:.0f} pods bound/s (first create to last bind)"
        )
        print(f"all Running after {done - began:.1f}s")
        for label, values in (("created-to-bound", to_bind), ("created-to-Running", to_run)):
            p50, p99 = percentiles(values)
            print(f"{label:<20} p50 {p50:8.0f} ms   p99 {p99:8.0f} ms")
        print("CPU seconds used during the run (where the time went):")
        for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<14} {seconds:7.1f}s")
    finally:
        await nc.close()
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                print(f"warning: {name} did not stop within 60s of SIGTERM; killed")
                proc.kill()
                proc.wait()
        server.stop()
    if profile:
        print("\nscheduler profile (cumulative time, top 15):")
        pstats.Stats(str(data / "scheduler.prof")).sort_stats("cumulative").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--profile", action="store_true", help="profile the scheduler with cProfile")
    args = parser.parse_args()
    asyncio.run(run(args.nodes, args.pods, args.profile))


if __name__ == "__main__":
    main()
