"""How the CLI reports failures: one clear line per cause, never a traceback for a user error."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import typer
from rich.console import Console

from bus.errors import SteerError

P = ParamSpec("P")

_SERVER_REASONS = frozenset(
    {
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Invalid",
        "Forbidden",
        "MethodNotAllowed",
        "RequestEntityTooLarge",
    }
)

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def report(err: SteerError, *, subject: str = "") -> None:
    """`Error from server (NotFound): pods "x" not found`, kubectl's shape; one line per cause."""
    prefix = f"Error from server ({err.reason}): " if err.reason in _SERVER_REASONS else "error: "
    where = f"{subject}: " if subject else ""
    if err.causes:
        for cause in err.causes:
            stderr.print(f"{prefix}{where}{err.message}: {cause}", markup=False)
    else:
        stderr.print(f"{prefix}{where}{err.message}", markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    stderr.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def run_async(fn: Callable[P, Coroutine[Any, Any, int | None]]) -> Callable[P, None]:
    """Run an async command; bus errors become messages and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            code = asyncio.run(fn(*args, **kwargs))
        except SteerError as err:
            report(err)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        if code:
            raise typer.Exit(code)

    return wrapper


def unexpected(err: BaseException) -> int:
    """Last resort for a bug: one line, with the traceback only when STEER_DEBUG is set."""
    if os.environ.get("STEER_DEBUG"):
        traceback.print_exception(err)
    else:
        print(
            f"error: internal error: {type(err).__name__}: {err} (set STEER_DEBUG=1 for details)",
            file=sys.stderr,
        )
    return 1
