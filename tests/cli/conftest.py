"""Running `steer` as a subprocess against the session's control plane."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

STEER = Path(sys.executable).parent / "steer"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


Steer = Callable[..., Result]


def steer_command() -> list[str]:
    return [str(STEER)] if STEER.exists() else [sys.executable, "-m", "cli.main"]


@pytest.fixture
def steer(nats_url: str, api_servers: object) -> Steer:
    def run(*args: str, stdin: str | None = None, timeout: float = 60) -> Result:
        env = {**os.environ, "STEER_NATS": nats_url, "COLUMNS": "200"}
        env.pop("STEER_NAMESPACE", None)
        proc = subprocess.run(
            [*steer_command(), *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def namespace(steer: Steer) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    result = steer("create", "namespace", name)
    assert result.code == 0, result.err
    return name
