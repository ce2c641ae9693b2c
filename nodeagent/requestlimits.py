"""Bounds on the logs and exec requests a node agent serves: anyone allowed to publish on the
node's subjects can send one, so every field is checked before it is used, and a request out
of bounds gets an Invalid error that names each field at fault (all at once), in Kubernetes'
words where Kubernetes has a rule. Pure: no I/O, tested by table.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from bus.errors import Invalid, StatusCause
from bus.streams import ExecRequest, LogsRequest

NAMESPACE_MAX = 63  # a DNS label
POD_MAX = 253  # a DNS subdomain
CONTAINER_MAX = 63  # a DNS label
INT64_MAX = 2**63 - 1  # tailLines is an int64 in Kubernetes
EXEC_TIMEOUT_MAX = 24 * 3600.0
ARGV_MAX_BYTES = 256 * 1024  # the whole command line, NATS payload aside


def check_logs(request: LogsRequest) -> None:
    """Invalid if any field of the logs request is out of bounds."""
    causes = _names(request.namespace, request.pod, request.container)
    if request.tail is not None and not 0 <= request.tail <= INT64_MAX:
        causes.append(_cause("tail", f"must be between 0 and {INT64_MAX}"))
    if request.since_seconds is not None and not (
        math.isfinite(request.since_seconds) and request.since_seconds >= 0
    ):
        causes.append(_cause("sinceSeconds", "must be a number of seconds, 0 or more"))
    if causes:
        raise Invalid("logs request is invalid", causes=causes)


def check_exec(request: ExecRequest) -> None:
    """Invalid if any field of the exec request is out of bounds."""
    causes = _names(request.namespace, request.pod, request.container)
    if not request.command:
        causes.append(_cause("command", "must name a command to run", reason="FieldValueRequired"))
    for i, argument in enumerate(request.command):
        if "\x00" in argument:
            causes.append(_cause(f"command[{i}]", "must not contain a NUL byte"))
    size = sum(len(argument.encode()) + 1 for argument in request.command)
    if size > ARGV_MAX_BYTES:
        causes.append(_cause("command", f"is {size} bytes long; at most {ARGV_MAX_BYTES}"))
    if not (math.isfinite(request.timeout_seconds) and 0 < request.timeout_seconds <= EXEC_TIMEOUT_MAX):
        causes.append(_cause("timeoutSeconds", f"must be more than 0 and at most {EXEC_TIMEOUT_MAX:g}"))
    if causes:
        raise Invalid("exec request is invalid", causes=causes)


def since_time(since_seconds: float | None, now: datetime | None = None) -> datetime | None:
    """Where `sinceSeconds` starts the logs; None (all of them) for none, 0, or more than the
    time since the epoch (no container's output is older)."""
    if not since_seconds:
        return None
    now = now or datetime.now(UTC)
    if since_seconds >= now.timestamp():
        return None
    return now - timedelta(seconds=since_seconds)


def _names(namespace: str, pod: str, container: str) -> list[StatusCause]:
    causes = []
    for field, value, longest in (
        ("namespace", namespace, NAMESPACE_MAX),
        ("pod", pod, POD_MAX),
        ("container", container, CONTAINER_MAX),
    ):
        if len(value) > longest:
            causes.append(
                _cause(field, f"must be no more than {longest} characters", reason="FieldValueTooLong")
            )
        elif "\x00" in value:
            causes.append(_cause(field, "must not contain a NUL byte"))
    return causes


def _cause(field: str, message: str, *, reason: str = "FieldValueInvalid") -> StatusCause:
    return StatusCause(field=field, message=message, reason=reason)
