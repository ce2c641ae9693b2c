"""The processes of bench/lb.py's clusters: a nats-server and steersman services, each its own
process with its log in the run's directory, stopped in reverse order whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import natsserver  # noqa: E402
from bus.client import Client  # noqa: E402
from bus.connection import connect  # noqa: E402
from bus.errors import SteerError  # noqa: E402
from bus.resources import Namespace  # noqa: E402


class Processes:
    def __init__(self, tmp: Path, url: str) -> None:
        self.tmp, self.url = tmp, url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, *args: str, log: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "STEER_LOG_LEVEL": "INFO"}
        with open(self.tmp / f"{log or module.rsplit('.', 1)[-1]}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, "--nats", self.url, *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes] | None = None, *, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: one process, or all, the last started first."""
        for p in [proc] if proc is not None else self.procs[::-1]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(grace)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def exited(self) -> list[str]:
        return [" ".join(map(str, p.args[2:4])) for p in self.procs if p.poll() is not None]  # type: ignore[index]


@contextlib.contextmanager
def control_plane(tmp: Path) -> Iterator[Processes]:
    """A nats-server and an API server, answering; everything started through the yielded
    `Processes` is stopped at the end, then the server."""
    server = natsserver.start(tmp / "nats", log_file=tmp / "nats.log")
    procs = Processes(tmp, server.url)
    try:
        procs.start("services.api")
        asyncio.run(wait_api(server.url))
        yield procs
    finally:
        procs.stop()
        server.stop()


async def wait_api(url: str) -> None:
    nc = await connect(url, name="bench-lb-wait")
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    await Client(nc, timeout=1).list(Namespace, "")
                    return
                except SteerError:
                    await asyncio.sleep(0.1)
    finally:
        await nc.close()
