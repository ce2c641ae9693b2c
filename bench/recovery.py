"""How soon everything serves again after a nats-server outage: figures, not a test.

Starts a nats-server and an API replica (a separate process), a client and a watch in this
process; then, for each outage length, kills the server (SIGKILL), keeps it down, starts it again
on the same port and store, and measures from the moment it is back:
  - reconnect: this process's connection is up again;
  - api: the API answers a request (its own connection is back, its subscriptions too);
  - watch: a change written as soon as the API answers reaches the watch (the watch resumed).
The watch figure includes the api one: it is the time until a live change is seen again.

    .venv/bin/python bench/recovery.py --outages 0.2,3,10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
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
from bus.connection import close, connect, discover, link  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.meta import ObjectMeta  # noqa: E402
from bus.resources import Lease, Namespace  # noqa: E402
from bus.store import Store, WatchEvent  # noqa: E402

NAMESPACE = "bench-recovery"


def start_api(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.api", "--nats", url], env=env, cwd=REPO, stdout=out, stderr=out
        )


async def until_answered(client: Client) -> None:
    while True:
        try:
            await client.get(Namespace, "default", "")
            return
        except SteerError:
            await asyncio.sleep(0.01)


async def one_outage(
    server: natsserver.NatsServer, client: Client, seen: asyncio.Queue[WatchEvent], down_for: float, n: int
) -> tuple[float, float, float]:
    state = link(client.nc)
    generation = state.generation
    await asyncio.to_thread(server.kill)
    await asyncio.sleep(down_for)
    await asyncio.to_thread(server.start_again)
    back = time.monotonic()
    while state.generation == generation:
        await state.connected.wait()
        await asyncio.sleep(0.001)
    reconnect = time.monotonic() - back
    await until_answered(client)
    api = time.monotonic() - back
    name = f"after-{n}"
    while True:
        try:
            # A Lease: no lifecycle event for the API to record while the next outage begins.
            await client.create(Lease(metadata=ObjectMeta(name=name, namespace=NAMESPACE)))
            break
        except SteerError:
            await asyncio.sleep(0.01)
    while True:
        event = await seen.get()
        if event.object is not None and event.object.metadata.name == name:
            return reconnect, api, time.monotonic() - back


async def run(outages: list[float], rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="steer-bench-"))
    server = natsserver.start(data / "nats", log_file=data / "nats.log")
    api = start_api(server.url, data / "api.log")
    nc = await connect(server.url, name="bench-recovery")
    watching: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while not [c for c in await discover(nc, wait=0.3) if c.name == "steer-api"]:
                pass
        client = Client(nc)
        await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
        seen: asyncio.Queue[WatchEvent] = asyncio.Queue()

        async def watch() -> None:
            async for event in Store(nc.jetstream()).watch(Lease, NAMESPACE):
                await seen.put(event)

        watching = asyncio.create_task(watch())
        while (await seen.get()).type != "SYNCED":
            pass
        print("seconds after the server is back, median/worst of each outage length")
        print(f"{'outage':>8} {'reconnect':>11} {'api':>11} {'watch':>11}")
        n = 0
        for down_for in outages:
            figures = []
            for _ in range(rounds):
                n += 1
                figures.append(await one_outage(server, client, seen, down_for, n))
            medians = [statistics.median(column) for column in zip(*figures, strict=True)]
            worst = [max(column) for column in zip(*figures, strict=True)]
            print(
                f"{down_for:>7g}s "
                + " ".join(f"{m:>6.2f}/{w:<4.2f}" for m, w in zip(medians, worst, strict=True))
            )
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        await close(nc)
        api.terminate()
        api.wait(10)
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--outages", default="0.2,3,10", help="seconds the server stays down, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run([float(s) for s in args.outages.split(",")], args.rounds))


if __name__ == "__main__":
    main()
