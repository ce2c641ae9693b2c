"""Bounds on logs and exec requests, by table (the agent answers each with these causes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.errors import Invalid
from bus.streams import ExecRequest, LogsRequest
from nodeagent.requestlimits import check_exec, check_logs, since_time

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def logs(**fields: object) -> LogsRequest:
    return LogsRequest(**{"namespace": "ns", "pod": "web", **fields})  # type: ignore[arg-type]


def execs(**fields: object) -> ExecRequest:
    return ExecRequest(**{"namespace": "ns", "pod": "web", "command": ["true"], **fields})  # type: ignore[arg-type]


def causes(check: object, request: object) -> list[str]:
    try:
        check(request)  # type: ignore[operator]
    except Invalid as err:
        return [c.field for c in err.causes]
    return []


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (logs(), []),
        (logs(tail=0, since_seconds=0.0, container="main"), []),
        (logs(tail=2**63 - 1, since_seconds=1e300), []),
        (logs(tail=2**63), ["tail"]),
        (logs(tail=-1, since_seconds=-1.0), ["tail", "sinceSeconds"]),
        (logs(since_seconds=float("nan")), ["sinceSeconds"]),
        (logs(since_seconds=float("inf")), ["sinceSeconds"]),
        (logs(namespace="n" * 64, pod="p" * 254, container="c" * 64), ["namespace", "pod", "container"]),
        (logs(pod="a\x00b"), ["pod"]),
    ],
)
def test_logs_bounds(request_: LogsRequest, fields: list[str]) -> None:
    assert causes(check_logs, request_) == fields


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (execs(), []),
        (execs(timeout_seconds=86400.0, command=["sh", "-c", "x" * 1000]), []),
        (execs(command=[]), ["command"]),
        (execs(command=["a", "b\x00", "c\x00"]), ["command[1]", "command[2]"]),
        (execs(command=["x" * (256 * 1024)]), ["command"]),
        (execs(timeout_seconds=0.0), ["timeoutSeconds"]),
        (execs(timeout_seconds=86400.5), ["timeoutSeconds"]),
        (execs(timeout_seconds=float("nan")), ["timeoutSeconds"]),
        (execs(pod="p" * 254, timeout_seconds=-1.0), ["pod", "timeoutSeconds"]),
    ],
)
def test_exec_bounds(request_: ExecRequest, fields: list[str]) -> None:
    assert causes(check_exec, request_) == fields


@pytest.mark.parametrize(
    ("seconds", "since"),
    [
        (None, None),
        (0.0, None),
        (60.0, NOW - timedelta(seconds=60)),
        (1e12, None),  # before the epoch: everything
        (1e300, None),
    ],
)
def test_since_time(seconds: float | None, since: datetime | None) -> None:
    assert since_time(seconds, NOW) == since
