"""A short chaos run (bench/chaos.py) on real Docker: kill -9 at random, under a steady workload,
every kind of process of a `steer up` cluster, nats-server included; nothing acknowledged is lost
and everything converges. `bench/chaos.py` runs the long ones."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import ChaosConfig, run


async def test_a_short_chaos_run_keeps_every_invariant(docker_engine: None, tmp_path: Path) -> None:
    config = ChaosConfig(duration=40, every=(2.0, 4.0), runtime="docker", settle=120, seed=13, data=tmp_path)
    report = await run(config)
    print("\n".join(report.lines()))
    assert len(report.kills) >= 8
    assert not report.violations, "\n".join(report.lines())
