"""Running a service process: logging, signals, and an exit code a supervisor can act on.

SIGINT and SIGTERM cancel the service's main task, so shutdown is ordinary cancellation through
its task group, and exit code 0. Everything else that ends a service is a failure, exit code 1, so
that its supervisor (`steer up`, systemd, Kubernetes) starts it again: a bus error it cannot get
past (its connection closed for good, say) is one log line; anything unexpected, a task of its
task group that died of a bug, is logged with its traceback. A service's main never returns on
its own while it serves; if it does, that is a failure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

from bus.errors import SteerError

log = logging.getLogger(__name__)

# A service still running this long after SIGTERM logs what each of its tasks is waiting on, so
# that whoever has to kill it (its supervisor does, eventually) can tell why it would not stop.
SLOW_STOP_REPORT = 5.0


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("STEER_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nats").setLevel(logging.WARNING)


async def _until_signalled(main: Coroutine[Any, Any, None]) -> bool:
    """Run `main`; whether it was stopped by a signal (rather than ending on its own)."""
    task = asyncio.ensure_future(main)
    signalled = False

    def stop() -> None:
        nonlocal signalled
        if not signalled:
            loop.call_later(SLOW_STOP_REPORT, _report_slow_stop, task)
        signalled = True
        task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    with contextlib.suppress(asyncio.CancelledError):  # a signal: the normal way to stop
        await task
    return signalled


def _report_slow_stop(main: asyncio.Future[None]) -> None:
    if main.done():
        return
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    lines = [f"still running {SLOW_STOP_REPORT:g}s after being told to stop; {len(tasks)} tasks:"]
    for pending in tasks:
        lines.append(f"  {pending.get_name()} cancelling={pending.cancelling()}: {_awaiting(pending)}")
    log.warning("\n".join(lines))


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where a task is suspended: its chain of awaits, outermost first."""
    where: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(where) < 12:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:
            where.append(type(awaited).__name__)
            break
        where.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return " -> ".join(where)


def run_service(name: str, main: Coroutine[Any, Any, None]) -> int:
    """Run `main` until a signal arrives; the process exit code (see the module docstring)."""
    setup_logging()
    try:
        signalled = asyncio.run(_until_signalled(main))
    except KeyboardInterrupt:
        return 0  # interrupted before the signal handlers were in place
    except SteerError as err:
        log.error("%s: %s; exiting", name, err.message)
        return 1
    except BaseExceptionGroup as group:
        return _failed(name, group)
    except Exception:
        log.critical("%s: stopped by an unexpected error; exiting", name, exc_info=True)
        return 1
    if not signalled:
        log.error("%s: stopped serving on its own; exiting", name)
        return 1
    return 0


def _failed(name: str, group: BaseExceptionGroup[Any]) -> int:
    """A task group that failed: its bus errors in one line each, anything else with a traceback."""
    bus_errors, others = group.split(SteerError)
    if others is not None:
        log.critical("%s: a task failed unexpectedly; exiting", name, exc_info=others)
    if bus_errors is not None:
        # Several tasks often fail of the same cause (every watch, when the connection closed).
        messages = [err.message if isinstance(err, SteerError) else str(err) for err in _leaves(bus_errors)]
        for message in dict.fromkeys(messages):
            log.error("%s: %s; exiting", name, message)
    return 1


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for err in group.exceptions:
        found.extend(_leaves(err) if isinstance(err, BaseExceptionGroup) else [err])
    return found
