"""The exit code of a service process: 0 only when a signal stopped it, 1 for anything that ended
it otherwise, with one line for a bus error and the traceback for anything unexpected."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from bus.errors import Unavailable
from bus.runner import run_service


async def _serve_until_signalled() -> None:
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
    await asyncio.Event().wait()


async def _task_dies_of_a_bug() -> None:
    async def buggy() -> None:
        raise TypeError("a bug in one task")

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(asyncio.Event().wait())
        tasks.create_task(buggy())


async def _connection_closed_for_good() -> None:
    async def watch() -> None:
        raise Unavailable("the connection to NATS was closed for good (maximum control line exceeded)")

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(asyncio.Event().wait())
        tasks.create_task(watch())
        tasks.create_task(watch())  # every watch fails of the same cause at once


async def _returns_on_its_own() -> None:
    return None


def test_a_signal_is_a_clean_stop() -> None:
    assert run_service("steer test", _serve_until_signalled()) == 0


def test_a_task_that_dies_of_a_bug_ends_the_service_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert run_service("steer test", _task_dies_of_a_bug()) == 1
    [record] = [r for r in caplog.records if r.name == "bus.runner"]
    assert record.levelno == logging.CRITICAL and record.exc_info is not None
    assert "a bug in one task" in caplog.text and "Traceback" in caplog.text


def test_a_closed_connection_ends_the_service_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    assert run_service("steer test", _connection_closed_for_good()) == 1
    [record] = [r for r in caplog.records if r.name == "bus.runner"]
    assert record.exc_info is None
    assert record.getMessage() == (
        "steer test: the connection to NATS was closed for good (maximum control line exceeded); exiting"
    )


def test_a_service_that_stops_serving_on_its_own_is_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    assert run_service("steer test", _returns_on_its_own()) == 1
    assert "stopped serving on its own" in caplog.text
