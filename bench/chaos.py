"""Chaos: kill -9 the parts of a `steer up` cluster at random under a steady workload, and check
that nothing the cluster acknowledged is lost and that it converges again.

    .venv/bin/python bench/chaos.py --duration 300 --every 2,6 --seed 7

For `--duration` seconds a workload scales and rolls out Deployments (one of them crash-loops)
and creates and deletes small objects, while a random process is killed every few seconds: API
replicas, the scheduler, the controllers, node agents and nats-server itself, each restarted by
`steer up`. Then the kills stop, and the run checks (chaos_checks.py): no acknowledged write
lost, nothing stuck Terminating, no pod evicted because of a bus outage, no container left that
no pod owns, every component back, and every Deployment settled on its spec, timed from the last
kill (p50 and p99). It prints the kills, the checks and the convergence times, and exits 1 if
any check failed. tests/system/test_chaos.py runs a short one in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from bench import chaos_checks as checks  # noqa: E402
from bench.chaos_cluster import ROLES, Proc, UpCluster  # noqa: E402
from bench.chaos_workload import NAMESPACE, Workload, run_steadily  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import close, connect  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.protocol import SYSTEM_NAMESPACE  # noqa: E402
from bus.resources import Lease, Namespace  # noqa: E402


@dataclass
class ChaosConfig:
    duration: float = 120.0  # seconds of kills per round
    rounds: int = 1
    every: tuple[float, float] = (2.0, 6.0)  # seconds between kills, drawn uniformly
    nodes: int = 3
    runtime: str = "auto"
    api_replicas: int = 2
    deployments: int = 3
    settle: float = 180.0  # the bound on convergence after the last kill of a round
    seed: int = 0
    roles: tuple[str, ...] = ROLES
    data: Path | None = None
    # steer up's own back-off doubles each time a component dies within a minute of its start.
    # Kills every few seconds would push nats-server's to minutes, and the convergence times would
    # measure that back-off rather than recovery; so the cap is lowered here (`--restart-backoff`).
    restart_backoff: str = "1,5,60"


@dataclass
class Report:
    kills: list[checks.Kill] = field(default_factory=list)
    changes: int = 0
    checks: dict[str, list[str]] = field(default_factory=dict)
    convergence: list[float | None] = field(default_factory=list)  # per Deployment and round
    explained_evictions: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def check(self, name: str, problems: list[str], *, round_: int | None = None) -> None:
        """Record a check (passed when `problems` is empty), adding to what earlier rounds found."""
        where = f"round {round_ + 1}: " if round_ is not None else ""
        self.checks.setdefault(name, []).extend(where + problem for problem in problems)

    @property
    def violations(self) -> list[str]:
        return [f"{check}: {problem}" for check, problems in self.checks.items() for problem in problems]

    def percentile(self, q: float) -> float | None:
        times = sorted(t for t in self.convergence if t is not None)
        if not times:
            return None
        return times[min(len(times) - 1, round(q * (len(times) - 1)))]

    def lines(self) -> list[str]:
        out = [f"kills ({len(self.kills)}):"]
        out += [
            f"  +{k.at - self.started:6.1f}s  {k.role:<11} {k.name or '-':<13} {k.standing:<8} pid {k.pid}"
            for k in self.kills
        ]
        out.append(f"workload: {self.changes} acknowledged changes")
        if self.explained_evictions:
            out.append(f"evictions after an agent was killed: {len(self.explained_evictions)}")
        out.append("checks:")
        for check, problems in self.checks.items():
            out.append(f"  {'ok  ' if not problems else 'FAIL'} {check}")
            out += [f"         {problem}" for problem in problems]
        times = [t for t in self.convergence if t is not None]
        if times:
            p50, p99 = self.percentile(0.5), self.percentile(0.99)
            out.append(
                f"convergence after the last kill of a round: p50 {p50:.1f}s, p99 {p99:.1f}s, "
                f"max {max(times):.1f}s, mean {statistics.fmean(times):.1f}s "
                f"({len(times)} Deployment settlings)"
            )
        return out


async def _kill_at_random(
    cluster: UpCluster, client: Client, config: ChaosConfig, rng: random.Random, report: Report, until: float
) -> None:
    while (left := until - time.monotonic()) > 0:
        await asyncio.sleep(min(left, rng.uniform(*config.every)))
        if time.monotonic() >= until:
            return
        running = await asyncio.to_thread(cluster.processes)
        roles = [role for role in config.roles if any(p.role == role for p in running)]
        if not roles:
            continue  # everything is restarting at this moment
        role = rng.choice(roles)
        victim = rng.choice([p for p in running if p.role == role])
        standing = await _leadership(client, victim)
        if cluster.kill(victim):
            kill = checks.Kill(time.monotonic(), victim.role, victim.name, victim.pid, standing)
            report.kills.append(kill)
            print(f"+{kill.at - report.started:6.1f}s kill -9 {victim} {standing}".rstrip(), flush=True)


async def _leadership(client: Client, victim: Proc) -> str:
    """ "leader" or "follower" for a replica of an elected service; "" otherwise (or not known)."""
    if victim.role not in ("scheduler", "controllers"):
        return ""
    try:
        lease = await client.get(Lease, victim.role, SYSTEM_NAMESPACE)
    except SteerError:
        return ""
    return "leader" if lease.spec.holder_identity == victim.name else "follower"


async def run(config: ChaosConfig) -> Report:
    with contextlib.ExitStack() as stack:
        data = config.data or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        cluster = UpCluster(
            data,
            nodes=config.nodes,
            runtime=config.runtime,
            api_replicas=config.api_replicas,
            extra=("--restart-backoff", config.restart_backoff),
        )
        await asyncio.to_thread(cluster.start)
        report = Report()
        try:
            await _observe(cluster, config, report)
        finally:
            code = await asyncio.to_thread(cluster.stop)
            left = [f"still running: {p}" for p in cluster.leftovers()]
            exit_code = [] if code == 0 else [f"exit code {code}"]
            report.check("steer up stops cleanly and leaves no process", exit_code + left)
            await asyncio.to_thread(cluster.down)
        return report


async def _observe(cluster: UpCluster, config: ChaosConfig, report: Report) -> None:
    nc = await connect(cluster.url, name="chaos")
    client = Client(nc, timeout=5.0)
    rng = random.Random(config.seed)
    workload = Workload(client, random.Random(rng.random()), config.deployments)
    terminating = checks.TerminatingWatch(client)
    try:
        await workload.setup()
        first = await checks.convergence(
            client, workload.desired, since=time.monotonic(), within=config.settle
        )
        report.check("settled before the first kill", [n for n, t in first.items() if t is None])
        report.started = time.monotonic()
        for round_ in range(config.rounds):
            await _round(cluster, client, config, rng, report, workload, terminating, round_)
        report.changes = workload.writes - workload.unacknowledged
        unexplained, report.explained_evictions = await checks.evictions(
            nc,
            since=timedelta(seconds=time.monotonic() - report.started + 60),
            kills=report.kills,
            node_of=terminating.node_of,
            started=report.started,
        )
        report.check("no pod evicted because of a bus outage", unexplained)
        with contextlib.suppress(SteerError):  # the namespace's pods go with it; best effort
            await client.delete(Namespace, NAMESPACE, "")
    finally:
        await close(nc)


async def _round(
    cluster: UpCluster,
    client: Client,
    config: ChaosConfig,
    rng: random.Random,
    report: Report,
    workload: Workload,
    terminating: checks.TerminatingWatch,
    round_: int,
) -> None:
    """Kills under the workload for `config.duration`, then the kills stop and the checks run."""
    print(f"round {round_ + 1} of {config.rounds}", flush=True)
    kills_before, lost_before = len(report.kills), workload.unacknowledged
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(run_steadily(workload, stop))
        tasks.create_task(terminating.run(stop))
        await _kill_at_random(cluster, client, config, rng, report, time.monotonic() + config.duration)
        stop.set()
    last_kill = report.kills[-1].at if len(report.kills) > kills_before else time.monotonic()
    settled = await checks.convergence(client, workload.desired, since=last_kill, within=config.settle)
    report.convergence += settled.values()
    await terminating.sample()
    expected = {
        "steer-api": config.api_replicas,
        "steer-scheduler": cluster.standby_replicas,
        "steer-controllers": cluster.standby_replicas,
        "steer-nodeagent": config.nodes,
    }
    orphans = await checks.orphan_containers(client, cluster.data, cluster.node_names, config.runtime)
    report.check("no acknowledged write lost", await workload.lost(), round_=round_)
    lost_now = workload.unacknowledged - lost_before
    unacknowledged = [f"{lost_now} writes never acknowledged"] if lost_now else []
    report.check("every write acknowledged", unacknowledged, round_=round_)
    report.check("nothing stuck Terminating", list(terminating.stuck.values()), round_=round_)
    report.check("no container left that no pod owns", orphans, round_=round_)
    report.check("every component back", await checks.components(client.nc, expected), round_=round_)
    unsettled = [name for name, t in settled.items() if t is None]
    report.check(
        f"every Deployment settled within {config.settle:g}s of the last kill", unsettled, round_=round_
    )


def parse_args(argv: list[str]) -> ChaosConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of kills per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of kills, each followed by the checks")
    parser.add_argument("--every", default="2,6", help="MIN,MAX seconds between kills")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runtime", default="auto", choices=["auto", "docker", "process"])
    parser.add_argument("--deployments", type=int, default=3)
    parser.add_argument("--settle", type=float, default=180.0, help="bound on convergence (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--roles", default=",".join(ROLES), help=f"what to kill, of {','.join(ROLES)}")
    parser.add_argument("--data-dir", type=Path, help="keep the cluster's state and logs here")
    parser.add_argument(
        "--restart-backoff", default="1,5,60", help="steer up's INITIAL,CAP,RESET restart back-off (seconds)"
    )
    args = parser.parse_args(argv)
    low, _, high = args.every.partition(",")
    roles = tuple(r for r in args.roles.split(",") if r)
    if unknown := set(roles) - set(ROLES):
        parser.error(f"unknown roles: {', '.join(sorted(unknown))}")
    return ChaosConfig(
        duration=args.duration,
        rounds=args.rounds,
        every=(float(low), float(high or low)),
        nodes=args.nodes,
        runtime=args.runtime,
        deployments=args.deployments,
        settle=args.settle,
        seed=args.seed,
        roles=roles,
        data=args.data_dir,
        restart_backoff=args.restart_backoff,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    report = asyncio.run(run(config))
    print("\n".join(report.lines()))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
