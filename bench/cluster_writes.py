"""What three replicas cost and what losing a server costs: figures, not a test.

Three set-ups, each with two API replicas (separate processes) and a writer in this process that
creates pods through the API, `--concurrency` at a time:
  - single: the embedded nats-server of `steer up` (nats.conf: one server, the default fsync);
  - cluster R1: three servers (`bus/natscluster.py`: sync_interval always), buckets at 1 replica;
  - cluster R3: the same, buckets at 3 replicas (the production set-up).
For each: creates per second and the p50/p99 latency of a create; then the R3/R1 ratio.

Then, on the R3 cluster, `--kills` times: while the writer writes, the server that leads the
pods bucket's stream is killed (SIGKILL) and started again once the writes are done; printed is
the longest time without a successful create from the kill on (the window of write
unavailability seen by clients that keep sending), and its median.

    .venv/bin/python bench/cluster_writes.py --creates 1000 --concurrency 8 --kills 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from tests.conftest import start_service, wait_for_components  # noqa: E402
from tests.natscluster import NatsCluster, api_replicas, connected, namespace  # noqa: E402
from tests.writeload import WriteLoad  # noqa: E402

PODS_STREAM = "KV_steer-pods"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(urls: str, creates: int, concurrency: int) -> dict[str, float]:
    async with connected(urls, "bench") as nc:
        client = Client(nc, timeout=5.0, retry_within=60.0)
        ns = await namespace(client)
        warm = WriteLoad(client, ns, total=min(100, creates), concurrency=concurrency)
        await warm.run()  # connections, buckets and caches warm
        load = WriteLoad(client, ns, total=creates, concurrency=concurrency)
        started = time.monotonic()
        await load.run()
        took = time.monotonic() - started
        latencies = load.latencies()
        return {
            "rate": len(load.created) / took,
            "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "failed": len(load.failed),
        }


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"{label:<12} {figures['rate']:7.0f} creates/s   p50 {figures['p50']:6.1f} ms   "
        f"p99 {figures['p99']:6.1f} ms   failed {figures['failed']:.0f}",
        flush=True,
    )


@contextlib.contextmanager
def single(root: Path) -> Iterator[str]:
    server = natsserver.start(root / "nats", log_file=root / "nats.log")
    apis = [start_service("services.api", "--nats", server.url, log=root / f"api-{i}.log") for i in range(2)]
    try:
        asyncio.run(wait_for_components(server.url, "steer-api", 2))
        yield server.url
    finally:
        for proc in apis:
            proc.terminate()
        for proc in apis:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        server.stop()


async def kill_leaders(cluster: NatsCluster, kills: int, creates: int, concurrency: int) -> list[float]:
    windows = []
    async with connected(cluster.urls, "bench-kills") as nc:
        client = Client(nc, timeout=3.0, retry_within=60.0)
        ns = await namespace(client)
        for n in range(kills):
            victim = await cluster.stream_leader(nc.jetstream(), PODS_STREAM)
            load = WriteLoad(client, ns, total=creates, concurrency=concurrency)
            async with asyncio.TaskGroup() as tasks:
                writing = tasks.create_task(load.run())
                await load.answered(creates // 4)
                killed_at = time.monotonic()
                await cluster.kill(victim)
                await writing
            window = load.window_after(killed_at)
            windows.append(window)
            await cluster.start_again(victim)
            await cluster.wait_caught_up(victim, PODS_STREAM, within=120)
            failures = "; ".join(f"{type(f.error).__name__}: {f.error.message}" for f in load.failed)
            print(
                f"kill {n + 1}: {victim} led the pods stream; no create succeeded for {window:.2f}s; "
                f"{len(load.failed)} failed{' (' + failures + ')' if failures else ''}, "
                f"{client.retries} retries so far",
                flush=True,
            )
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        print(
            f"{args.creates} creates of a pod through the API, {args.concurrency} at a time, 2 API replicas"
        )
        with single(root / "single") as url:
            show("single", asyncio.run(measure(url, args.creates, args.concurrency)))
        results = {}
        for replicas in (1, 3):
            label = f"cluster R{replicas}"
            with (
                NatsCluster.running(root / label.replace(" ", "-")) as cluster,
                api_replicas(cluster, replicas=replicas),
            ):
                results[replicas] = asyncio.run(measure(cluster.urls, args.creates, args.concurrency))
                show(label, results[replicas])
                if replicas == 3 and args.kills:
                    windows = asyncio.run(kill_leaders(cluster, args.kills, args.creates, args.concurrency))
        r1, r3 = results[1], results[3]
        print(
            f"R3 against R1: {r3['rate'] / r1['rate']:.2f}x the creates/s, "
            f"{r3['p50'] / r1['p50']:.2f}x the p50, {r3['p99'] / r1['p99']:.2f}x the p99"
        )
        if args.kills:
            print(
                f"write unavailability after killing the pods stream's leader: median "
                f"{statistics.median(windows):.2f}s (min {min(windows):.2f}s, max {max(windows):.2f}s, "
                f"{len(windows)} kills)"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
