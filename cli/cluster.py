"""`steer status` (the live components of a cluster), and the commands that start one service.

`steer up` and `steer down`, which run and remove a whole local cluster, live in up.py and down.py.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from rich.table import Table

from bus.connection import connect, discover
from cli.columns import age
from cli.errors import run_async
from cli.output import stdout
from cli.session import credentials, settings


@run_async
async def status() -> int:
    """List the live components (NATS micro services) of the cluster."""
    nc = await connect(settings.servers, name="steer-cli", credentials=credentials())
    try:
        components = await discover(nc)
        version = nc.connected_server_version
        stdout.print(
            f"nats: {nc.connected_url.netloc if nc.connected_url else settings.servers} (server {version})"
        )
    finally:
        await nc.close()
    if not components:
        print("no steersman components are running", file=sys.stderr)
        return 1
    table = Table(show_edge=False, box=None, header_style="bold", pad_edge=False)
    for column in ("COMPONENT", "INSTANCE", "VERSION", "REQUESTS", "ERRORS", "UP"):
        table.add_column(column)
    for c in components:
        started = _parse_time(c.started)
        table.add_row(
            c.name, c.metadata.get("instance", c.id), c.version, str(c.requests), str(c.errors), age(started)
        )
    stdout.print(table)
    return 0


def _parse_time(text: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def exec_service(module: str, args: list[str]) -> None:
    """Hand the process over to a service's own entry point (cli never imports services)."""
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
