"""The supervisor of `steer up`, with real processes: restarts, back-off, exits, stop order."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bus import natscluster
from cli.supervisor import BackoffPolicy, Child, RestartBackoff, Supervisor, describe_exit, exited, span
from cli.up import _buses, _cluster


@pytest.mark.parametrize(
    ("runs", "delays"),
    [
        ([0.1] * 6, [0, 1, 2, 4, 8, 16]),  # at once, then doubling
        ([0.1] * 12, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]),  # up to the cap
        ([0.1, 0.1, 0.1, 60, 0.1, 0.1], [0, 1, 2, 0, 1, 2]),  # a minute of running starts over
        ([120, 120, 120], [0, 0, 0]),  # a process that dies now and then comes back at once
    ],
)
def test_restart_delays(runs: list[float], delays: list[float]) -> None:
    backoff = RestartBackoff(BackoffPolicy())
    assert [backoff.next_delay(ran_for) for ran_for in runs] == delays


def test_restart_delays_stay_at_the_cap_forever() -> None:
    backoff = RestartBackoff(BackoffPolicy(initial=1, cap=300, reset_after=60))
    assert {backoff.next_delay(0) for _ in range(5000)} >= {300}
    assert backoff.next_delay(0) == 300


@pytest.mark.parametrize(
    ("text", "policy"),
    [("1,300,60", BackoffPolicy(1, 300, 60)), ("0,0,1", BackoffPolicy(0, 0, 1)), ("0.5, 4, 10", None)],
)
def test_backoff_policy_parses(text: str, policy: BackoffPolicy | None) -> None:
    assert BackoffPolicy.parse(text) == (policy or BackoffPolicy(0.5, 4, 10))


@pytest.mark.parametrize("text", ["", "1,2", "a,b,c", "5,1,60", "1,300,0", "-1,3,4", "1,1e9,60", "1,2,3,4"])
def test_backoff_policy_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="INITIAL"):
        BackoffPolicy.parse(text)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL"),
        (-15, "killed by SIGTERM"),
    ],
)
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.25, "0.2s"), (4, "4s"), (42.9, "42s"), (190, "3m10s"), (7500, "2h5m")]
)
def test_span(seconds: float, text: str) -> None:
    assert span(seconds) == text


def python(tmp_path: Path, name: str, *lines: str) -> Child:
    return Child(name, [sys.executable, "-c", "\n".join(lines)], tmp_path / f"{name}.log")


class Said:
    """What the supervisor says, line by line, and a way to wait for the next lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._more = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._more.set()

    async def until(self, count: int) -> list[str]:
        while len(self.lines) < count:
            self._more.clear()
            await self._more.wait()
        return self.lines


async def until_file_holds(path: Path, text: str) -> None:
    while text not in await asyncio.to_thread(path.read_text):  # noqa: ASYNC110 (no event for a file)
        await asyncio.sleep(0.02)


async def test_exited_reports_a_kill_as_it_happens() -> None:
    with subprocess.Popen(["sleep", "600"]) as proc:  # noqa: ASYNC220 (exited() watches a Popen)
        waiting = asyncio.create_task(exited(proc))
        await asyncio.sleep(0)  # the pidfd is watched
        proc.kill()
        assert await waiting == -signal.SIGKILL


async def test_a_child_that_keeps_failing_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    said = Said()
    supervisor = Supervisor(backoff=BackoffPolicy(initial=0.2, cap=0.4, reset_after=60), say=said)
    child = python(tmp_path, "failing", "import sys", "print('run')", "sys.exit(3)")
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(supervisor.keep_running(child))
        lines = await said.until(4)
        await supervisor.stop([[child]], grace=5)
    assert [line.split("; ")[1].split(" (")[0] for line in lines[:4]] == [
        "restarting now",
        "restarting in 0.2s",
        "restarting in 0.4s",
        "restarting in 0.4s",
    ]
    assert all(line.startswith("failing: exited with code 3 after ") for line in lines)
    assert (tmp_path / "failing.log").read_text().count("run") >= 4


async def test_groups_stop_in_order_and_a_stubborn_child_is_killed(tmp_path: Path) -> None:
    first_gone = str(tmp_path / "first-gone")
    first = python(
        tmp_path,
        "first",
        "import pathlib, signal, time",
        f"def stop(*_): pathlib.Path({first_gone!r}).touch(); raise SystemExit(0)",
        "signal.signal(signal.SIGTERM, stop)",
        "print('up', flush=True)",
        "time.sleep(600)",
    )
    second = python(  # exits 0 on SIGTERM only if the first group has stopped already
        tmp_path,
        "second",
        "import os, pathlib, signal, time",
        f"def stop(*_): os._exit(0 if pathlib.Path({first_gone!r}).exists() else 1)",
        "signal.signal(signal.SIGTERM, stop)",
        "print('up', flush=True)",
        "time.sleep(600)",
    )
    stubborn = python(
        tmp_path,
        "stubborn",
        "import signal, time",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "print('up', flush=True)",
        "time.sleep(600)",
    )
    said = Said()
    supervisor = Supervisor(backoff=BackoffPolicy(), say=said)
    async with asyncio.TaskGroup() as tasks:
        for child in (first, second, stubborn):
            supervisor.start(child)
            tasks.create_task(supervisor.keep_running(child))
        for child in (first, second, stubborn):  # each has set its signal handler
            await until_file_holds(child.log, "up")
        await supervisor.stop([[first, stubborn], [second]], grace=0.5)
    assert first.process is not None and first.process.returncode == 0
    assert second.process is not None and second.process.returncode == 0
    assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL
    assert said.lines == [f"stubborn: still running 0.5s after SIGTERM; killing it (see {stubborn.log})"]
    assert first.restarts == second.restarts == stubborn.restarts == 0  # a stop is no exit to restart


async def test_a_command_that_cannot_start_is_retried(tmp_path: Path) -> None:
    said = Said()
    supervisor = Supervisor(backoff=BackoffPolicy(initial=0.1, cap=0.1, reset_after=60), say=said)
    child = Child("missing", [str(tmp_path / "no-such-program")], tmp_path / "missing.log")
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(supervisor.keep_running(child))
        lines = await said.until(2)
        await supervisor.stop([[child]], grace=1)
    assert lines[0].startswith("missing: cannot start: [Errno 2] No such file or directory")
    assert "restarting now" in lines[0] and "restarting in 0.1s" in lines[1]


def test_the_api_stops_after_its_clients_and_before_the_bus(tmp_path: Path) -> None:
    """The scheduler and the controllers give their leases up through the API as they stop."""
    counts = {"api": 2, "scheduler": 2, "controllers": 1}
    specs = natscluster.loopback_specs(1, port=4222, cluster_port=6222)
    buses = _buses(tmp_path, specs, includes=[], credentials=None)
    url = natscluster.urls(specs)
    cluster = _cluster(tmp_path, buses, url=url, replicas=counts, node_names=["n-1"], runtime="process")
    assert [[child.name for child in group] for group in cluster.stop_order] == [
        ["n-1"],
        ["scheduler-1", "scheduler-2", "controllers"],
        ["api-1", "api-2"],
        ["nats"],
    ]
