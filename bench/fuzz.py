"""Fuzz the services for a long while, and print what was tried and what broke.

    python bench/fuzz.py                     # 100,000 inputs over every target
    python bench/fuzz.py --inputs 5000 --seed 7 --target api --target apply

Starts its own nats-server, API and node agent (fake runtime) as real processes, then draws
inputs with hypothesis (the strategies of tests/fuzzing) and sends them: raw payloads to every
API subject and to the node-scoped subjects, mutated manifests through the path `steer apply`
takes, logs and exec requests to the node agent, and a few manifests through `steer apply` as a
subprocess (it must never print a traceback). Failures do not stop the run: each kind is
counted and its first input printed. The suite runs the same targets, bounded (tests/fuzzing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import NonInteractiveExampleWarning  # noqa: E402

from bus.connection import connect  # noqa: E402
from bus.resources import Node  # noqa: E402
from bus.store import Store  # noqa: E402
from tests.agents import node_ready  # noqa: E402
from tests.cluster import ControlPlane  # noqa: E402
from tests.fuzzing import manifests, payloads  # noqa: E402
from tests.fuzzing.fixtures import NAMES, RUNNING  # noqa: E402
from tests.fuzzing.harness import Finding, Harness  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

# Share of the inputs each target gets (apply and cli are slower per input, so they get fewer).
SHARES = {"api": 0.45, "node-api": 0.2, "apply": 0.15, "logs": 0.1, "exec": 0.1}
CLI_RUNS = 20
HEALTH_EVERY = 500


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs to try in all")
    parser.add_argument("--seed", type=int, default=None, help="seed (random by default)")
    parser.add_argument("--target", action="append", choices=[*SHARES, "cli"], help="only these targets")
    parser.add_argument("--show", type=int, default=3, help="inputs printed as they are tried, per target")
    return parser.parse_args()


class Run:
    def __init__(self, harness: Harness, loop: asyncio.AbstractEventLoop, show: int) -> None:
        self.harness = harness
        self.loop = loop
        self.show = show
        self.started = time.monotonic()

    def one(self, target: str, example: str, attempt: Awaitable[list[Finding]]) -> None:
        tried = self.harness.findings.tried[target]
        if tried < self.show:
            print(f"  {target} input {tried + 1}: {example[:160]!r}", flush=True)
        problems = self.loop.run_until_complete(attempt)
        total = sum(self.harness.findings.tried.values())
        if problems or total % HEALTH_EVERY == 0:
            self.loop.run_until_complete(self.harness.health(revive=True))
            self.loop.run_until_complete(self.harness.ensure_fixtures())
        if total % HEALTH_EVERY == 0:
            rate = total / (time.monotonic() - self.started)
            found = sum(self.harness.findings.counts.values())
            print(f"  ... {total} inputs ({rate:.0f}/s), {found} failures so far", flush=True)

    def drive(self, count: int, seed: int, body: Callable[[st.DataObject], None]) -> None:
        """Draw `count` inputs with hypothesis; `body` sends one and never raises."""
        if count <= 0:
            return
        _hypothesis(body, count, seed)()


def run_targets(run: Run, counts: dict[str, int], seed: int) -> None:
    h = run.harness

    def api(data: st.DataObject) -> None:
        target = data.draw(payloads.api_target(h.namespace))
        body = data.draw(payloads.payload(target.verb, list(NAMES)))
        run.one("api", f"{target.subject[:100]} {body[:100]!r}", h.api(target, body))

    def node_api(data: st.DataObject) -> None:
        target = data.draw(payloads.api_target(h.namespace, node=h.node))
        body = data.draw(payloads.payload(target.verb, [*NAMES, RUNNING]))
        run.one("node-api", f"{target.subject[:100]} {body[:100]!r}", h.api(target, body, name="node-api"))

    def apply(data: st.DataObject) -> None:
        bodies = [
            data.draw(manifests.manifest().flatmap(manifests.mutated))[1]
            for _ in range(data.draw(st.integers(1, 2)))
        ]
        if data.draw(st.booleans()):
            bodies.append(data.draw(manifests.manifest()))
        text = data.draw(manifests.text(bodies))
        run.one("apply", text[:160], h.apply(text))

    pods = [(h.namespace, RUNNING), (h.namespace, "web"), ("nowhere", "x")]

    def logs(data: st.DataObject) -> None:
        body = data.draw(payloads.logs_request(pods))
        run.one("logs", repr(body[:160]), h.logs(body))

    def exec_(data: st.DataObject) -> None:
        body = data.draw(payloads.exec_request(pods))
        run.one("exec", repr(body[:160]), h.exec(body))

    for name, body in (
        ("api", api),
        ("node-api", node_api),
        ("apply", apply),
        ("logs", logs),
        ("exec", exec_),
    ):
        if counts.get(name):
            print(f"{name}: {counts[name]} inputs", flush=True)
            run.drive(counts[name], seed, body)


def run_cli(harness: Harness, url: str, runs: int, seed: int) -> None:
    """`steer apply -f` as a subprocess: whatever the file holds, no traceback, a clear exit."""
    if runs <= 0:
        return
    print(f"cli: {runs} runs of steer apply", flush=True)
    steer = Path(sys.executable).parent / "steer"
    command = [str(steer)] if steer.exists() else [sys.executable, "-m", "cli.main"]
    env = {**os.environ, "STEER_NATS": url, "PYTHONPATH": str(REPO)}

    def body(data: st.DataObject) -> None:
        bodies = [data.draw(manifests.manifest().flatmap(manifests.mutated))[1]]
        text = data.draw(manifests.text(bodies))
        harness.findings.tried["cli"] += 1
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yaml", encoding="utf-8", errors="surrogateescape"
        ) as f:
            f.write(text)
            f.flush()
            done = subprocess.run(
                [*command, "apply", "-f", f.name, "-n", harness.namespace],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
        problem = ""
        if "Traceback" in done.stderr:
            problem = "traceback"
        elif "internal error" in done.stderr:
            problem = "internal error"
        elif done.returncode not in (0, 1):
            problem = f"exit code {done.returncode}"
        if problem:
            harness.findings.add(Finding("cli", problem, done.stderr.strip()[-300:], text[:300]))
        else:
            harness.findings.outcomes[f"cli: exit {done.returncode}"] += 1

    _hypothesis(body, runs, seed)()


def _hypothesis(body: Callable[[st.DataObject], None], count: int, at: int) -> Callable[[], None]:
    """`body` as a hypothesis test drawing `count` inputs from seed `at`: generation only (a
    failure is recorded, never raised, so there is nothing to shrink)."""
    options = settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    return seed(at)(options(given(st.data())(body)))  # type: ignore[no-any-return]


def report(harness: Harness, started: float) -> int:
    findings = harness.findings
    total = sum(findings.tried.values())
    elapsed = time.monotonic() - started
    print()
    print(f"inputs tried: {total} in {elapsed:.0f}s on {os.cpu_count()} cores ({total / elapsed:.0f}/s)")
    for target, count in sorted(findings.tried.items()):
        print(f"  {target}: {count}")
    print("outcomes:")
    for outcome, count in sorted(findings.outcomes.items()):
        print(f"  {outcome}: {count}")
    failures = findings.report()
    print(f"failures: {sum(findings.counts.values())} ({len(failures)} distinct)")
    for line in failures:
        print(f"  {line}")
    return 1 if failures else 0


def main() -> int:
    args = parse_args()
    warnings.simplefilter("ignore", NonInteractiveExampleWarning)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    targets = args.target or [*SHARES, "cli"]
    shares = {t: SHARES[t] for t in targets if t in SHARES}
    inputs = args.inputs - (CLI_RUNS if "cli" in targets else 0)
    counts = {t: int(inputs * share / sum(shares.values())) for t, share in shares.items()}
    print(f"seed {seed}; targets {', '.join(targets)}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, ControlPlane.running(Path(tmp)) as plane:
        agent = plane.start_agent("fake")
        loop = asyncio.new_event_loop()
        nc = loop.run_until_complete(connect(plane.url, name="fuzzer"))
        try:
            loop.run_until_complete(wait_for(Store(nc.jetstream()), Node, "", agent.name, node_ready))
            harness = loop.run_until_complete(Harness.start(plane, nc, node=agent.name))
            run = Run(harness, loop, args.show)
            run_targets(run, counts, seed)
            if "cli" in targets:
                run_cli(harness, plane.url, min(CLI_RUNS, args.inputs), seed)
            loop.run_until_complete(harness.health(revive=True))
            return report(harness, run.started)
        finally:
            loop.run_until_complete(nc.close())
            loop.close()


if __name__ == "__main__":
    sys.exit(main())
