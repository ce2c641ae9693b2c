"""`steer down`: stop the `steer up` of a data dir and remove what its cluster left, as
`kind delete cluster` does.

`steer up` stopped with Ctrl-C keeps the store and leaves the pods' containers running for the
next one to adopt; `steer down` is the way to be rid of them. It tells the running `steer up`
(found by its lock on the data dir) to stop, as Ctrl-C would, waits for it, kills it if it does
not stop in time (its processes die with it), then removes every container its nodes made.
`--purge` removes the data dir as well: the store, the logs, everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from bus.errors import SteerError, Unavailable
from cli import datadir, podcontainers
from cli.errors import run_async
from cli.output import stdout

STOP_TIMEOUT = 120.0  # a graceful stop takes up to 3 x 30 s (agents, services, the bus)
KILL_TIMEOUT = 10.0


@run_async
async def down(
    data_dir: Annotated[
        Path, typer.Option(help="The data dir of the cluster (as given to steer up).")
    ] = Path(".steer"),
    purge: Annotated[
        bool, typer.Option(help="Also remove the data dir: the store, the logs, everything.")
    ] = False,
) -> int:
    """Stop the cluster of a data dir and remove every container its nodes made."""
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        _say(f"no cluster in {data_dir}")
        return 0
    if not (data_dir / datadir.RECORD).exists() and not (data_dir / "nats").is_dir():
        # Never remove (or look for containers in) a directory steer up did not make.
        raise SteerError(f"{data_dir} is not the data dir of a steer up (no {datadir.RECORD}, no nats/)")
    await _stop_up(data_dir)
    record = datadir.read(data_dir)
    prefix = record.node_prefix if record else "node"
    runtime = record.runtime if record else "auto"
    # The networks first: their records (the address files) are in the node dirs that the
    # removal of the process containers takes.
    await _remove_networks(data_dir / "nodes", prefix)
    removed = await asyncio.to_thread(podcontainers.remove_process_containers, data_dir / "nodes")
    if runtime in ("auto", "docker"):
        try:
            removed += await podcontainers.remove_docker_containers(podcontainers.node_names(prefix))
        except Unavailable as err:
            if runtime == "docker":
                raise SteerError(f"cannot remove the Docker containers of {prefix}-*: {err.message}") from err
            # auto fell back to the process runtime when no engine answered: nothing to remove there
    _say(f"removed {removed} container{'' if removed == 1 else 's'} of nodes {prefix}-*")
    if purge:
        try:
            shutil.rmtree(data_dir)
        except OSError as err:
            raise SteerError(f"cannot remove {data_dir}: {err.strerror}") from err
        _say(f"removed {data_dir}")
    return 0


async def _remove_networks(nodes_dir: Path, prefix: str) -> None:
    """Each node's pod network (namespaces, links, bridge, nftables table), by the node agent's
    own clean-up, which knows what it made. Only root can have made any."""
    nodes = await asyncio.to_thread(_node_dirs, nodes_dir, prefix)
    if os.geteuid() != 0 or not nodes:
        return
    for node in nodes:
        args = ["--name", node, "--data-dir", str(nodes_dir), "--clean-up"]
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "nodeagent", *args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            said = output.decode(errors="replace").strip().splitlines()
            raise SteerError(
                f"cannot remove the pod network of {node}: {said[-1] if said else proc.returncode}"
            )
    _say(f"removed the pod networks of nodes {prefix}-*")


def _node_dirs(nodes_dir: Path, prefix: str) -> list[str]:
    if not nodes_dir.is_dir():
        return []
    names = podcontainers.node_names(prefix)
    return sorted(p.name for p in nodes_dir.iterdir() if p.is_dir() and names.fullmatch(p.name))


async def _stop_up(data_dir: Path) -> None:
    """Stop the `steer up` that holds `data_dir`, if one does: SIGTERM, then SIGKILL if it lingers."""
    if not datadir.is_claimed(data_dir):
        return
    pid = datadir.holder(data_dir)
    if pid is None:
        raise SteerError(f"{data_dir} is held by a steer up this user cannot see; stop it first")
    _say(f"stopping steer up (pid {pid})")
    _signal(pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await datadir.until_released(data_dir)
        return
    except TimeoutError:
        _say(
            f"steer up (pid {pid}) still runs after {STOP_TIMEOUT:g}s: killing it (its processes die with it)"
        )
    _signal(pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(KILL_TIMEOUT):
            await datadir.until_released(data_dir)
    except TimeoutError:
        raise SteerError(f"steer up (pid {pid}) still holds {data_dir} after SIGKILL") from None


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it ended meanwhile: its lock is gone as well
    except PermissionError as err:
        raise SteerError(f"cannot stop steer up (pid {pid}): {err.strerror}") from err


def _say(line: str) -> None:
    stdout.print(line, markup=False, highlight=False)
