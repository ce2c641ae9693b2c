"""Choosing a runtime by name: docker, process, fake, or auto (docker if an engine answers)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from nodeagent.runtime.base import Runtime, RuntimeFailure
from nodeagent.runtime.docker import DockerRuntime
from nodeagent.runtime.fake import FakeRuntime
from nodeagent.runtime.process import ProcessRuntime

log = logging.getLogger(__name__)

RUNTIME_NAMES = ("auto", "docker", "process", "fake")
PROBE_SECONDS = 2.0


async def make_runtime(
    name: str,
    *,
    root_dir: Path,
    docker_url: str | None = None,
    probe_seconds: float = PROBE_SECONDS,
) -> Runtime:
    """The runtime called `name`; `root_dir` holds the process runtime's state and logs.

    "docker" insists on an engine that answers within `probe_seconds` (RuntimeFailure if none);
    "auto" settles for the process runtime then, as `steer up` does on a machine without Docker.
    """
    match name:
        case "docker":
            return await _docker(docker_url, probe_seconds)
        case "process":
            return ProcessRuntime(root_dir)
        case "fake":
            return FakeRuntime()
        case "auto":
            try:
                return await _docker(docker_url, probe_seconds)
            except RuntimeFailure as failure:
                log.info("using the process runtime: %s", failure)
                return ProcessRuntime(root_dir)
        case _:
            raise ValueError(f"unknown runtime {name!r}: expected one of {', '.join(RUNTIME_NAMES)}")


async def _docker(url: str | None, probe_seconds: float) -> DockerRuntime:
    runtime = DockerRuntime(url)
    try:
        async with asyncio.timeout(probe_seconds):
            await runtime.version()
    except (RuntimeFailure, TimeoutError) as err:
        await runtime.close()
        detail = str(err.__cause__ or err) or f"no answer within {probe_seconds:g}s"
        raise RuntimeFailure(f"no Docker engine answers at {runtime.address}: {detail}") from err
    return runtime
