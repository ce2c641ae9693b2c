"""What the Docker engine alone needs for bench/vs_swarm.py's deploy and scale steps: create and
start N containers at once through the API, no orchestrator. Neither orchestrator can beat this
on the same engine; the gap above it is each orchestrator's own cost.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import aiodocker

LABEL = "steersman.bench.floor"  # with the run id: what the clean-up removes


async def start_containers(
    docker: aiodocker.Docker, count: int, *, image: str, command: list[str], run: str
) -> float:
    """Seconds to create and start `count` containers concurrently (host networking)."""
    config: dict[str, Any] = {
        "Image": image,
        "Entrypoint": command,
        "Labels": {LABEL: run},
        "HostConfig": {"NetworkMode": "host"},
    }

    async def one() -> None:
        container = await docker.containers.create(config)
        await container.start()

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - began


async def remove_containers(docker: aiodocker.Docker, run: str) -> None:
    filters = json.dumps({"label": [f"{LABEL}={run}"]})
    containers = await docker.containers.list(all="true", filters=filters)
    await asyncio.gather(*(c.delete(force=True) for c in containers))


async def floor(
    docker: aiodocker.Docker, replicas: int, *, image: str, command: list[str], run: str
) -> dict[str, float]:
    """Seconds for `deploy` (N containers) and `scale` (N more beside them); removed after."""
    try:
        deploy = await start_containers(docker, replicas, image=image, command=command, run=run)
        scale = await start_containers(docker, replicas, image=image, command=command, run=run)
        return {"deploy": deploy, "scale": scale}
    finally:
        await remove_containers(docker, run)


def remove_leftovers(run: str) -> None:
    """Blocking clean-up for an interrupted run."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}={run}"], capture_output=True, text=True
    )
    if ids := listed.stdout.split():
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
