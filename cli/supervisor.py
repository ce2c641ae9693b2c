"""Supervising the processes of `steer up`: tied to it, restarted whenever they exit, stopped in order.

- Tied: each child asks the kernel to SIGKILL it when `steer up` dies (the Linux parent-death
  signal, set between fork and exec), so a `steer up` killed with SIGKILL, or stopped in any
  other way, leaves no nats-server and no service behind. The signal fires when the *thread*
  that forked the child ends, so children are forked only from the event loop's thread, which
  lives as long as `steer up`. (The pods' containers are not children: they stay, on purpose.)
- In a session of their own: Ctrl-C in the terminal reaches only `steer up`, which stops them in
  order (node agents, then the other services, the bus last).
- Restarted forever, with the kubelet's back-off started sooner: the first restart is at once (a
  component that dies is usually a crash or a kill, and the cluster needs it back), the next
  ones wait 1 s, doubling up to 5 min; a child that ran a minute starts the count again.
- An exit is noticed when it happens, through a pidfd watched by the event loop: no polling,
  no waiting thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bus.errors import SteerError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_GONE = 125  # exit code of a child whose parent died before it could be tied to it
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class BackoffPolicy:
    """Delays between restarts: at once, then `initial` doubling to `cap`; reset by a run of `reset_after`."""

    initial: float = 1.0
    cap: float = 300.0
    reset_after: float = 60.0

    @classmethod
    def parse(cls, text: str) -> BackoffPolicy:
        """`INITIAL,CAP,RESET` in seconds; ValueError naming the problem."""
        try:
            initial, cap, reset_after = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f'"{text}" is not INITIAL,CAP,RESET (three numbers of seconds)') from None
        if not 0 <= initial <= cap <= 86400 or not 0 < reset_after <= 86400:
            raise ValueError(f'"{text}": need 0 <= INITIAL <= CAP <= 86400 and 0 < RESET <= 86400')
        return cls(initial, cap, reset_after)


@dataclass
class RestartBackoff:
    """The back-off of one child: how long to wait before starting it again."""

    policy: BackoffPolicy
    failures: int = 0  # exits in a row, each after a run shorter than policy.reset_after

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.policy.reset_after:
            self.failures = 0
        doublings = min(self.failures - 1, MAX_DOUBLINGS)
        delay = 0.0 if self.failures == 0 else min(self.policy.initial * 2.0**doublings, self.policy.cap)
        self.failures += 1
        return delay


@dataclass
class Child:
    """One supervised process: its command line, its log, and what became of it."""

    name: str
    argv: list[str]
    log: Path
    # Why it may have exited, found out after the fact (e.g. who holds its port); "" if nothing.
    explain: Callable[[], str] = field(default_factory=lambda: _no_reason)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of the next start while backing off

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def state(self) -> str:
        if self.process is None:
            return "starting"
        code = self.process.poll()
        if code is None:
            return "running"
        if self.restart_at is not None:
            return f"{describe_exit(code)}; restart in {span(max(0.0, self.restart_at - time.monotonic()))}"
        return describe_exit(code)


def _no_reason() -> str:
    return ""


class Supervisor:
    """Starts children tied to this process and keeps them running until `stop`."""

    def __init__(self, *, backoff: BackoffPolicy, say: Callable[[str], None]) -> None:
        self._backoff = backoff
        self._say = say
        self._stopping = asyncio.Event()
        self._pid = os.getpid()
        prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
        if prctl is None:
            raise SteerError("steer up needs Linux (it ties its processes to itself with prctl)")
        self._prctl: Callable[..., int] = prctl

    def start(self, child: Child) -> None:
        """Start `child` now, tied to this process. Call it from the event loop's thread only."""
        prctl, parent, deathsig = self._prctl, self._pid, int(signal.SIGKILL)

        def tie() -> None:  # in the child, between fork and exec: no imports, no locks
            if prctl(PR_SET_PDEATHSIG, deathsig, 0, 0, 0) != 0 or os.getppid() != parent:
                os._exit(PARENT_GONE)  # the parent died before the tie held

        with open(child.log, "ab") as out:  # the child keeps its own descriptor
            child.process = subprocess.Popen(
                child.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=tie,
            )
        child.started_at = time.monotonic()
        child.restart_at = None

    async def keep_running(self, child: Child) -> None:
        """Start `child` unless it runs, and start it again whenever it exits, until `stop`."""
        backoff = RestartBackoff(self._backoff)
        while not self._stopping.is_set():
            if child.process is None or child.process.poll() is not None:
                try:
                    self.start(child)
                except (OSError, subprocess.SubprocessError) as err:
                    await self._back_off(child, backoff, f"cannot start: {err}", 0.0)
                    continue
            assert child.process is not None
            code = await exited(child.process)
            if self._stopping.is_set():
                return
            ran_for = time.monotonic() - child.started_at
            await self._back_off(child, backoff, f"{describe_exit(code)} after {span(ran_for)}", ran_for)

    async def _back_off(self, child: Child, backoff: RestartBackoff, what: str, ran_for: float) -> None:
        delay = backoff.next_delay(ran_for)
        child.restarts += 1
        child.restart_at = time.monotonic() + delay
        why = child.explain()
        when = "now" if delay == 0 else f"in {span(delay)}"
        self._say(
            f"{child.name}: {what}{f' ({why})' if why else ''}; restarting {when}"
            f" (restart {child.restarts}, log {child.log})"
        )
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def stop(self, groups: Sequence[Sequence[Child]], *, grace: float) -> None:
        """No more restarts; then each group in turn: SIGTERM, and SIGKILL after `grace` seconds."""
        self._stopping.set()
        for group in groups:
            async with asyncio.TaskGroup() as tasks:
                for child in group:
                    if child.running:
                        tasks.create_task(self._terminate(child, grace))

    def kill(self, children: Sequence[Child]) -> None:
        """SIGKILL every child now (a second Ctrl-C); `stop` then finds them gone."""
        self._stopping.set()
        for child in children:
            if child.process is not None and child.running:
                child.process.kill()

    async def _terminate(self, child: Child, grace: float) -> None:
        assert child.process is not None
        child.process.terminate()
        try:
            async with asyncio.timeout(grace):
                await exited(child.process)
        except TimeoutError:
            self._say(
                f"{child.name}: still running {span(grace)} after SIGTERM; killing it (see {child.log})"
            )
            child.process.kill()
            await exited(child.process)


async def exited(process: subprocess.Popen[bytes]) -> int:
    """The exit code of `process` (negative: the signal that killed it), once it has exited.

    A pidfd turns readable when the process ends; the event loop watches it. Only this module
    reaps these children (nothing in `steer up` waits for any child), so the pid stays valid.
    """
    if (code := process.poll()) is not None:
        return code
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(process.pid)  # a zombie still has its pid: no race with an exit just now
    ended = asyncio.Event()
    loop.add_reader(fd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return process.wait()  # the process has ended: this reaps it without blocking


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def span(seconds: float) -> str:
    """A short duration for people: 0.4s, 12s, 3m10s, 2h5m."""
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s" if whole % 60 else f"{whole // 60}m"
    return f"{whole // 3600}h{whole % 3600 // 60}m"
