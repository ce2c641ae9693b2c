"""Removing every container the node agents of a local cluster made, for `steer down`.

`steer up` leaves the pods' containers running when it stops, so that the next one adopts them;
`steer down` removes them, as `kind delete cluster` removes its nodes. They are found the way a
restarted node agent finds its own:

- Docker: by the node label of bus/containerlabels.py, for each node name of the cluster
  (PREFIX-1, PREFIX-2...). Removed with force, as `docker rm -f` does.
- process runtime: by the files the runtime keeps under <data-dir>/nodes/<node>/<pod uid>/
  <container>/<attempt>.json (nodeagent/runtime/containerdir.py). Each names the container's
  process by its pid and its start time (field 22 of /proc/<pid>/stat), so that a pid reused
  since is never signalled; the process leads its own process group, which is killed whole.
  Then the files go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from pathlib import Path

import aiodocker
import aiohttp
import msgspec
from aiodocker.exceptions import DockerError

from bus.containerlabels import LABEL_NODE
from bus.errors import SteerError, Unavailable

DOCKER_TIMEOUT = 30.0


class _ProcessRecord(msgspec.Struct):
    """What a process-runtime container file says of its process (the rest is not needed here)."""

    pid: int
    start_ticks: int  # 0: the process was gone before the runtime looked


def node_names(prefix: str) -> re.Pattern[str]:
    """The node names `steer up --node-prefix PREFIX` gives its nodes."""
    return re.compile(rf"{re.escape(prefix)}-[1-9][0-9]*")


async def remove_docker_containers(nodes: re.Pattern[str]) -> int:
    """Remove every Docker container of the nodes named by `nodes`; how many there were.

    Unavailable if no Docker engine answers.
    """
    try:
        docker = aiodocker.Docker()
    except (AssertionError, ValueError) as err:  # aiodocker asserts when it finds no socket at all
        raise Unavailable(f"no Docker engine to talk to: {err}") from err
    try:
        async with asyncio.timeout(DOCKER_TIMEOUT):
            listed = await docker.containers.list(all=True, filters={"label": [LABEL_NODE]})
            ours = [c for c in listed if nodes.fullmatch((c["Labels"] or {}).get(LABEL_NODE, ""))]
            async with asyncio.TaskGroup() as tasks:
                for container in ours:
                    tasks.create_task(_remove(container))
            return len(ours)
    except (DockerError, aiohttp.ClientError, TimeoutError) as err:
        raise Unavailable(f"the Docker engine does not answer: {err or 'timed out'}") from err
    finally:
        await docker.close()


async def _remove(container: aiodocker.containers.DockerContainer) -> None:
    try:
        await container.delete(force=True)
    except DockerError as err:
        if err.status != 404:  # 404: gone meanwhile, which is what we want
            raise


def remove_process_containers(nodes_dir: Path) -> int:
    """Kill every process-runtime container under `nodes_dir`, then remove its files; how many ran."""
    killed = 0
    for path in nodes_dir.glob("*/*/*/*.json"):
        if not path.stem.isdigit():
            continue  # not a container file
        try:
            record = msgspec.json.decode(path.read_bytes(), type=_ProcessRecord)
        except (OSError, msgspec.DecodeError):
            continue  # half written or removed meanwhile: no process to name
        if record.start_ticks and _start_ticks(record.pid) == record.start_ticks:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.killpg(record.pid, signal.SIGKILL)
                killed += 1
    try:
        shutil.rmtree(nodes_dir)
    except FileNotFoundError:
        pass  # no node ever ran a process container here
    except OSError as err:
        raise SteerError(f"cannot remove {nodes_dir}: {err.strerror}") from err
    return killed


def _start_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the rest follows the last ")".
    return int(text[text.rindex(")") + 2 :].split()[19])
