"""steersman against Docker Swarm mode, on the same machine in one run.

Both run N `sleep 3600` containers of the local image `busybox:local` (built by
scripts/docker-engine; nothing is pulled) with host networking, on one node: Swarm mode in the
local Docker engine (`docker swarm init --advertise-addr 127.0.0.1`, left again at the end), and a
steersman cluster of separate processes (nats-server, API, scheduler, controllers, one node agent
with the docker runtime) driving the same engine. Four figures, in seconds, each from the request
to the moment the orchestrator reports it done:

    deploy    create a service / Deployment of N replicas
    scale     N to 2N replicas
    heal      `docker kill` one container; until the full count runs again
    roll out  change an env var of the template of 2N replicas, P = 25% of 2N at a time, new
              before old: Swarm --update-parallelism P --update-delay 0s --update-order start-first;
              steersman RollingUpdate maxSurge P, maxUnavailable 0

"Done" is, for Swarm, every task it wants running in state running (what `docker service ls` counts
as REPLICAS n/n; polled every 0.1 s, as Swarm has no watch), all of the new spec for a roll-out; for
steersman, the Deployment's status (watched): latest generation observed and replicas = updated =
ready = available = spec.replicas. Neither side waits on purpose before replacing a killed container
(Swarm --restart-delay 0s; steersman's agent, as the kubelet, restarts a container at once the first
time) nor before stopping one (grace period 0). Repetitions alternate between the two; the figures
printed are medians, with steersman/Swarm ratios. Beside them: the engine alone (create and start N
containers at once through the Docker API, no orchestrator: the floor for deploy and scale), the CPU
seconds each process used during the rounds, and how busy the whole machine was (other users' work
included). Every service and container this run created is removed at the end, also when
interrupted.

    .venv/bin/python bench/vs_swarm.py --replicas 50 --repeat 3 [--only swarm|steersman] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import statistics
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiodocker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engine_floor, swarm_mode  # noqa: E402
from bench.cpu_usage import cpu_seconds, machine_ticks, pids_named  # noqa: E402
from bench.steersman_cluster import Cluster  # noqa: E402
from bench.steersman_deployment import deployment_round  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.meta import is_true  # noqa: E402
from bus.resources import Node  # noqa: E402
from bus.store import Store  # noqa: E402

IMAGE = "busybox:local"
COMMAND = ["sleep", "3600"]
PHASES = ("deploy", "scale", "heal", "roll out")
SIDES = ("Swarm", "steersman")
FLOOR = "engine alone"
ENGINE = ("dockerd", "containerd")  # the engine's processes, whose CPU both sides use


class Round(Protocol):
    async def deploy(self, replicas: int, *, parallelism: int, within: float) -> float: ...
    async def scale(self, replicas: int, *, within: float) -> float: ...
    async def heal(self, *, within: float) -> float: ...
    async def roll_out(self, *, within: float) -> float: ...


@dataclass
class Run:
    """What this run created, so that it can be removed even after an interruption."""

    id: str
    cluster: Cluster
    swarm_initiated: bool = False
    figures: dict[str, dict[str, list[float]]] = field(default_factory=lambda: defaultdict(dict))
    cpu: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    ticks: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def clean_up(self) -> None:
        engine_floor.remove_leftovers(self.id)
        swarm_mode.remove_services(self.id)
        if self.swarm_initiated:
            swarm_mode.leave_swarm()
        self.cluster.stop()


async def timed_round(side: Round, replicas: int, *, parallelism: int, within: float) -> dict[str, float]:
    return {
        "deploy": await side.deploy(replicas, parallelism=parallelism, within=within),
        "scale": await side.scale(2 * replicas, within=within),
        "heal": await side.heal(within=within),
        "roll out": await side.roll_out(within=within),
    }


class Bench:
    def __init__(self, run: Run, docker: aiodocker.Docker, *, replicas: int, within: float) -> None:
        self.run = run
        self.docker = docker
        self.replicas = replicas
        self.within = within
        self.parallelism = math.ceil(0.25 * 2 * replicas)
        self.engine = pids_named(ENGINE)
        self.image_id = ""
        self.client: Client | None = None
        self.store: Store | None = None

    def processes(self, side: str) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self.engine.items()}
        if side == "steersman":
            used.update(self.run.cluster.cpu_seconds())
        return used

    @contextlib.asynccontextmanager
    async def round(self, side: str, label: str) -> AsyncIterator[Round]:
        name = f"vs-swarm-{self.run.id}-{label}"
        if side == "Swarm":
            async with swarm_mode.service_round(
                self.docker, service=name, image=self.image_id, command=COMMAND, run=self.run.id
            ) as swarm:
                yield swarm
        else:
            assert self.client is not None and self.store is not None
            async with deployment_round(
                self.client, self.store, self.docker, namespace=name, image=IMAGE, command=COMMAND
            ) as steersman:
                yield steersman

    async def warm_up(self, side: str) -> None:
        """One small untimed deployment: first-use costs (leader election, caches) out of the figures."""
        async with self.round(side, "warm") as warm:
            await warm.deploy(2, parallelism=1, within=self.within)

    async def measure(self, side: str, repetition: int) -> None:
        before, (busy, total) = self.processes(side), machine_ticks()
        async with self.round(side, str(repetition)) as side_round:
            figures = await timed_round(
                side_round, self.replicas, parallelism=self.parallelism, within=self.within
            )
            after, (busy_after, total_after) = self.processes(side), machine_ticks()
        for name, seconds in after.items():
            self.run.cpu[side][name] += seconds - before.get(name, 0.0)
        self.run.ticks[side][0] += busy_after - busy
        self.run.ticks[side][1] += total_after - total
        self.record(side, repetition, figures)

    async def measure_floor(self, repetition: int) -> None:
        figures = await engine_floor.floor(
            self.docker, self.replicas, image=IMAGE, command=COMMAND, run=self.run.id
        )
        self.record(FLOOR, repetition, figures)

    def record(self, side: str, repetition: int, figures: dict[str, float]) -> None:
        for phase, seconds in figures.items():
            self.run.figures[side].setdefault(phase, []).append(seconds)
        shown = "  ".join(f"{phase} {seconds:6.2f}s" for phase, seconds in figures.items())
        print(f"  #{repetition + 1} {side:<12} {shown}", flush=True)


async def start_steersman(bench: Bench) -> None:
    cluster = bench.run.cluster
    await asyncio.to_thread(cluster.start)
    nc = await connect(cluster.url, name="bench vs-swarm")
    bench.client, bench.store = Client(nc), Store(nc.jetstream())
    async with asyncio.timeout(60):
        while True:  # the API answers once it has started
            try:
                await bench.client.list(Node)
                break
            except SteerError:
                await asyncio.sleep(0.1)
        async with contextlib.aclosing(bench.store.watch(Node)) as events:
            async for event in events:
                node = event.object
                if (
                    node is not None
                    and node.metadata.name == cluster.node
                    and is_true(node.status.conditions)
                ):
                    break


async def run(args: argparse.Namespace, state: Run) -> None:
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop as on Ctrl-C: clean-up runs
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    sides = [s for s in SIDES if args.only in ("", s.lower())]
    docker = aiodocker.Docker()
    bench = Bench(state, docker, replicas=args.replicas, within=args.timeout)
    try:
        try:
            bench.image_id = (await docker.images.inspect(IMAGE))["Id"]
        except aiodocker.DockerError:
            raise SystemExit(f"no image {IMAGE}: run scripts/docker-engine (as root) first") from None
        version = (await docker.version())["Version"]
        if "Swarm" in sides:
            state.swarm_initiated = await swarm_mode.ensure_swarm(docker)
        if "steersman" in sides:
            await start_steersman(bench)
        print(
            f"steersman vs Docker Swarm mode (engine {version}); {os.cpu_count()} cores; "
            f"{args.replicas} -> {2 * args.replicas} replicas; roll-out parallelism {bench.parallelism} "
            f"(25% of {2 * args.replicas}); {args.repeat} repetitions",
            flush=True,
        )
        for side in sides:
            await bench.warm_up(side)
        for repetition in range(args.repeat):
            for side in sides:
                await bench.measure(side, repetition)
            await bench.measure_floor(repetition)
    finally:
        await docker.close()
        if bench.client is not None:
            await bench.client.nc.close()
    report(state, sides, args.replicas)


def report(state: Run, sides: list[str], replicas: int) -> None:
    labels = {
        "deploy": f"deploy {replicas}",
        "scale": f"scale {replicas} -> {2 * replicas}",
        "heal": "heal 1 killed",
        "roll out": f"roll out {2 * replicas}",
    }
    columns = [*sides, FLOOR]
    both = len(sides) == 2
    print(f"\nmedian seconds; {os.cpu_count()} cores")
    print(f"{'':<22}" + "".join(f"{c:>14}" for c in columns) + ("   steersman/Swarm" if both else ""))
    for phase in PHASES:
        medians = {
            c: statistics.median(state.figures[c][phase]) for c in columns if phase in state.figures[c]
        }
        line = f"{labels[phase]:<22}" + "".join(
            f"{medians[c]:>14.2f}" if c in medians else f"{'-':>14}" for c in columns
        )
        if both:
            line += f"   x{medians['steersman'] / medians['Swarm']:.2f}"
        print(line)
    print("\nCPU seconds used during the timed rounds (all repetitions), and how busy the machine was:")
    for side in sides:
        used = sorted(state.cpu[side].items(), key=lambda kv: -kv[1])
        busy, total = state.ticks[side]
        print(
            f"  {side:<10} machine {100 * busy / max(total, 1):.0f}% busy; "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=50, help="replicas deployed (then scaled to twice)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions on each side")
    parser.add_argument("--only", choices=["swarm", "steersman"], default="")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds any one step may take")
    parser.add_argument("--profile", action="store_true", help="run steersman's services under cProfile")
    args = parser.parse_args()
    if args.replicas < 2 or args.repeat < 1:
        parser.error("--replicas must be at least 2 and --repeat at least 1")
    run_id = uuid.uuid4().hex[:6]
    data = Path(tempfile.mkdtemp(prefix="steer-vs-swarm-"))
    cluster = Cluster(data, node=f"vs-swarm-{run_id}", pods=3 * args.replicas + 10, profile=args.profile)
    state = Run(run_id, cluster)
    failed = False
    try:
        asyncio.run(run(args, state))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: removing what this run created", file=sys.stderr)
        failed = True
    except (TimeoutError, RuntimeError, SteerError, aiodocker.DockerError) as err:
        print(f"\nfailed: {err}; the logs of steersman's services are in {data}", file=sys.stderr)
        if exited := cluster.exited():
            print(f"stopped early: {', '.join(exited)}", file=sys.stderr)
        failed = True
    finally:
        state.clean_up()
    if args.profile:
        cluster.print_profiles()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
