"""Who holds a TCP port: "127.0.0.1:4222 is in use by pid 812 (nats-server)", not "see nats.log".

`steer up` checks its bus port before it starts anything. When the port is taken, the listening
socket is found in /proc/net/tcp (and tcp6) by its port, and its inode in the descriptors of the
processes under /proc. Processes of other users (when not root) cannot be looked into: then the
port is only said to be in use.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from bus.errors import SteerError

_LISTEN = "0A"  # TCP state of a listening socket in /proc/net/tcp
_PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    pid: int
    command: str


def ensure_free(host: str, port: int) -> None:
    """SteerError naming the owner if `host:port` cannot be listened on."""
    if problem := why_busy(host, port):
        raise SteerError(problem)


def why_busy(host: str, port: int) -> str:
    """Why `host:port` cannot be listened on ("" if it can), with the owner where it can be found."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As nats-server (Go) does: a connection of an earlier server in TIME_WAIT is no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {err.strerror}"
        else:
            return ""
    owner = listener(port)
    if owner is None:
        return f"{host}:{port} is in use (by a process this user cannot see)"
    return f"{host}:{port} is in use by pid {owner.pid} ({owner.command})"


def listener(port: int) -> Owner | None:
    """The process listening on TCP `port` (any address), if /proc shows it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in _PROC.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = _readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return Owner(int(proc.name), (proc / "comm").read_text().strip())
        except OSError:
            continue  # gone meanwhile, or not ours to look into
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""  # closed meanwhile
