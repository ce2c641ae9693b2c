"""`steer up` supervises what it started: restarts whatever exits, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from tests.agents import REPO
from tests.cli.localup import (
    LocalUp,
    alive,
    children_of,
    eventually,
    free_port,
    local_up,
    up_command,
)

POD = """apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
    - {name: main, image: busybox:local, command: ["sleep", "600"]}
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_up_stopped_by_any_signal_leaves_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    with local_up(tmp_path, nodes=1) as up:
        children = up.children()
        commands = " ".join(children.values())
        assert "nats-server" in commands and "services.api" in commands and "nodeagent" in commands
        up.proc.send_signal(sig)
        code = up.proc.wait(60)
        assert eventually(lambda: not any(alive(pid) for pid in children), within=15), {
            pid: cmdline for pid, cmdline in children.items() if alive(pid)
        }
        if sig != signal.SIGKILL:
            assert code == 0
            assert up.proc.stdout is not None and "stopped" in up.proc.stdout.read()


def test_closing_its_terminal_stops_up_and_all_it_started(tmp_path: Path) -> None:
    """The terminal goes away (the kernel hangs it up): SIGHUP, and every write to it fails."""
    terminal, terminal_end = os.openpty()
    args = up_command(tmp_path, free_port(), "--nodes", "1", "--runtime", "process")
    # A session of its own whose controlling terminal is ours, as in a terminal window.
    with subprocess.Popen(
        ["setsid", "--ctty", *args], stdin=terminal_end, stdout=terminal_end, stderr=terminal_end
    ) as proc:
        os.close(terminal_end)
        screen = bytearray()
        while b"ready:" not in screen:
            screen += os.read(terminal, 65536)
        children = children_of(proc.pid)
        assert len(children) == 5, children  # nats-server, api, scheduler, controllers, the agent
        os.close(terminal)  # the window is closed
        assert proc.wait(60) == 0
    assert eventually(lambda: not any(alive(pid) for pid in children), within=15)


def test_a_killed_child_comes_back_and_the_cluster_serves_again(tmp_path: Path) -> None:
    with local_up(tmp_path, nodes=1) as up:
        node = f"{up.prefix}-1"
        for marker, name in (("nats-server", "nats"), ("services.api", "api-1"), ("nodeagent", node)):
            killed = up.child(marker)
            os.kill(killed, signal.SIGKILL)
            assert "restarting now" in up.read_until(f"{name}: killed by SIGKILL")
            assert eventually(partial(_restarted, up, marker, killed))
            assert eventually(partial(_creates_namespace, up, f"after-{name}")), _last_error
        ready = up.steer("wait", "--for=condition=Ready", f"node/{node}", "--timeout", "60s")
        assert ready.returncode == 0, ready.stderr


def _restarted(up: LocalUp, marker: str, killed: int) -> bool:
    return any(marker in cmdline and pid != killed for pid, cmdline in up.children().items())


_last_error: list[str] = []


def _creates_namespace(up: LocalUp, name: str) -> bool:
    created = up.steer("create", "namespace", name)
    _last_error[:] = [created.stderr]
    return created.returncode == 0


def test_restarts_back_off_after_the_first(tmp_path: Path) -> None:
    with local_up(tmp_path, "--restart-backoff", "0.2,1,60") as up:
        os.kill(up.child("services.scheduler"), signal.SIGKILL)
        assert "restarting now (restart 1" in up.read_until("scheduler: killed")
        assert eventually(lambda: "services.scheduler" in " ".join(up.children().values()))
        os.kill(up.child("services.scheduler"), signal.SIGKILL)
        assert "restarting in 0.2s (restart 2" in up.read_until("scheduler: killed")
        assert eventually(lambda: "services.scheduler" in " ".join(up.children().values()))


def test_a_second_up_names_who_holds_the_data_dir_or_the_port(tmp_path: Path) -> None:
    with local_up(tmp_path / "first") as first:
        same_dir = subprocess.run(
            up_command(tmp_path / "first", free_port(), "--nodes", "0"), capture_output=True, text=True
        )
        assert same_dir.returncode == 1
        assert f"{tmp_path / 'first'} is in use by another steer up (pid {first.proc.pid})" in same_dir.stderr
        same_port = subprocess.run(
            up_command(tmp_path / "second", first.port, "--nodes", "0"), capture_output=True, text=True
        )
        assert same_port.returncode == 1
        nats = first.child("nats-server")
        assert f"127.0.0.1:{first.port} is in use by pid {nats} (nats-server)" in same_port.stderr
        assert "Traceback" not in same_dir.stderr + same_port.stderr
        assert first.steer("get", "ns").returncode == 0  # the first one was not disturbed
        assert nats == first.child("nats-server")


# Prints how many asyncio tasks `steer up`'s event loop holds, twice a second, on stderr (the real
# one: on a terminal, rich's live display takes sys.stderr over).
TASK_COUNTER = """
import asyncio, sys

class CountingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        loop = super().new_event_loop()
        def sample():
            print(f"tasks {len(asyncio.all_tasks(loop))}", file=sys.__stderr__, flush=True)
            loop.call_later(0.5, sample)
        loop.call_soon(sample)
        return loop

asyncio.set_event_loop_policy(CountingPolicy())
sys.argv[0] = "steer"
from cli.main import main
main()
"""


def test_supervision_holds_a_steady_number_of_tasks(tmp_path: Path) -> None:
    """The wait loop of `steer up` once left one pending task behind per tick, for ever."""
    script = tmp_path / "count_tasks.py"
    script.write_text(TASK_COUNTER)
    # On a terminal, so that the live status table is refreshed too.
    terminal, terminal_end = os.openpty()
    args = ["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), "--nodes", "0"]
    with subprocess.Popen(
        [sys.executable, str(script), *args, "--runtime", "process"],
        stdin=subprocess.DEVNULL,
        stdout=terminal_end,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as proc:
        os.close(terminal_end)
        screen = bytearray()
        drain = threading.Thread(target=_drain, args=(terminal, screen), daemon=True)
        drain.start()
        try:
            assert proc.stderr is not None
            counts = []
            for line in proc.stderr:
                if line.startswith("tasks ") and b"ready:" in screen:
                    counts.append(int(line.split()[1]))
                    if len(counts) == 20:  # 10 s of supervision: 10 ticks of the old wait loop
                        break
            assert len(counts) == 20, screen.decode(errors="replace")
            assert b"PROCESS" in screen  # the status table was shown, and refreshed meanwhile
            early, late = min(counts[:6]), min(counts[-6:])
            assert late <= early + 1, counts
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            drain.join(10)
            os.close(terminal)


def _drain(fd: int, into: bytearray) -> None:
    """Read the terminal's output until it closes (a full terminal would block `steer up`)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return  # EIO: the other end is closed
        if not chunk:
            return
        into += chunk
