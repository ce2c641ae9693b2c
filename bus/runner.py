"""Running a service process: logging, signals, and a clean exit.

SIGINT and SIGTERM cancel the service's main task, so shutdown is ordinary cancellation through
its task group; a connection failure at start-up is one clear line on stderr and exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from bus.errors import SteerError


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("STEER_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nats").setLevel(logging.WARNING)


async def _until_signalled(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):  # a signal: the normal way to stop
        await task


def run_service(name: str, main: Coroutine[Any, Any, None]) -> int:
    """Run `main` until it ends or a signal arrives; the process exit code."""
    setup_logging()
    try:
        asyncio.run(_until_signalled(main))
    except SteerError as err:
        print(f"{name}: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0  # interrupted before the signal handlers were in place
    return 0
