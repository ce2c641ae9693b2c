"""API latency at a steady offered rate, beside raw JetStream KV on the same server.

Starts a nats-server and two API replicas (separate processes, one queue group), then offers
requests open-loop at a fixed rate: each request's latency is measured from the moment it was
due, so a stall shows up in the tail instead of silently lowering the rate (no coordinated
omission). Prints p50/p99 for API get and create and for raw KV get and put, and the ratios.

    .venv/bin/python bench/api_latency.py --rate 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js.api import KeyValueConfig, StorageType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.codec import encode  # noqa: E402
from bus.connection import connect, discover  # noqa: E402
from bus.meta import ObjectMeta  # noqa: E402
from bus.resources import Namespace, Pod  # noqa: E402
from bus.resources.pod import Container, PodSpec  # noqa: E402

NAMESPACE = "bench"


def pod(name: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE, labels={"app": "bench"}),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local", command=["sleep", "3600"])]),
    )


async def offered_load(rate: float, seconds: float, op: Callable[[int], Awaitable[object]]) -> list[float]:
    """Latencies (ms) of `rate * seconds` calls of `op`, each started on its own schedule."""
    count = int(rate * seconds)
    latencies: list[float] = []
    start = time.perf_counter() + 0.05

    async def one(i: int, due: float) -> None:
        await op(i)
        latencies.append((time.perf_counter() - due) * 1000)

    async with asyncio.TaskGroup() as tasks:
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.create_task(one(i, due))
    return latencies


def summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def start_api(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "services.api", "--nats", url], env=env, cwd=REPO)


async def run(rate: float, seconds: float) -> None:
    data = Path(tempfile.mkdtemp(prefix="steer-bench-"))
    server = natsserver.start(data, log_file=data / "nats.log")
    apis = [start_api(server.url) for _ in range(2)]
    nc = await connect(server.url, name="bench")
    try:
        async with asyncio.timeout(30):
            while len([c for c in await discover(nc, wait=0.2) if c.name == "steer-api"]) < 2:
                pass
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        js = nc.jetstream()
        kv = await js.create_key_value(
            KeyValueConfig(bucket="bench-raw", storage=StorageType.FILE, history=1, direct=True)
        )
        payload = encode(pod("template"))  # raw KV writes the same bytes the API stores

        created = 0

        async def api_create(i: int) -> None:
            nonlocal created
            await client.create(pod(f"p-{i}"))
            created += 1

        async def api_get(i: int) -> None:
            await client.get(Pod, f"p-{random.randrange(created)}", NAMESPACE)

        async def kv_put(i: int) -> None:
            await kv.put(f"{NAMESPACE}.p-{i}", payload)

        async def kv_get(i: int) -> None:
            await kv.get(f"{NAMESPACE}.p-{random.randrange(int(rate * seconds))}")

        results: dict[str, tuple[float, float]] = {}
        phases = (("kv put", kv_put), ("kv get", kv_get), ("api create", api_create), ("api get", api_get))
        for name, op in phases:
            results[name] = summary(await offered_load(rate, seconds, op))

        print(f"\nAPI latency at {rate:g} requests/s offered for {seconds:g}s each; {os.cpu_count()} cores")
        print(f"{'operation':<12}{'p50 ms':>10}{'p99 ms':>10}")
        for name, (p50, p99) in results.items():
            print(f"{name:<12}{p50:>10.2f}{p99:>10.2f}")
        for api, raw in (("api get", "kv get"), ("api create", "kv put")):
            (a50, a99), (r50, r99) = results[api], results[raw]
            print(f"{api} / {raw}: p50 x{a50 / r50:.2f}, p99 x{a99 / r99:.2f}")
    finally:
        await nc.close()
        for proc in apis:
            proc.terminate()
        for proc in apis:
            proc.wait(10)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds))


if __name__ == "__main__":
    main()
