"""Node agents as real processes against the session's control plane, and a real Docker engine.

With CI=true a missing engine is a failure, never a skip: the Docker tests must run in CI.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.agents import AgentProcess, StartAgent, node_ready

__all__ = ["AgentProcess", "StartAgent", "node_ready"]

IMAGE = "busybox:local"
# A registry on a closed loopback port: a pull fails at once and no traffic leaves the machine.
MISSING_IMAGE = "127.0.0.1:9/steersman/missing:1"


def _docker_answers() -> str:
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, text=True)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"docker info failed: {err}"
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[:200]}"
    image = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=20)
    if image.returncode != 0:
        return f"image {IMAGE} is missing (scripts/docker-engine builds it)"
    return ""


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = _docker_answers()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
