"""The HTTP backends of bench/lb.py, and a probe of a balanced address; standard library only, so
that it runs as a pod's command (process runtime) or inside a pod's network namespace.

    python bench/lb_backend.py serve [--workers N] [--host H] NAME=PORT [NAME=PORT ...]
    python bench/lb_backend.py names HOST:PORT --expect N [--timeout S]

`serve` answers every `GET` with NAME (keep-alive unless the request says `Connection: close`)
and counts it; `GET /_count` answers the requests NAME served so far and is not counted (it is
also the readiness probe's path). `--workers` processes share each listening socket, so that
one backend can use every core: the comparison of one backend with a balanced set is then one
of paths, not of how many processes serve. Each worker accepts one connection per wake-up, so
an idle worker takes the next connection (SO_REUSEPORT would spread a handful of keep-alive
connections by a hash, often unevenly). Each worker counts in its own slot of a shared
anonymous mapping, so the count is exact without locks.

`names` asks HOST:PORT until it has heard N different names (a Service balanced over all its
backends) and exits 0, or exits 1 after the timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import mmap
import os
import signal
import socket
import struct
import sys
import time

SLOT = struct.Struct("=Q")


class _Http(asyncio.Protocol):
    """Minimal HTTP/1.1: GET requests without a body; keep-alive unless `Connection: close`."""

    def __init__(self, name: bytes, counts: mmap.mmap, slot: int, slots: range) -> None:
        self.name, self.counts, self.slot, self.slots = name, counts, slot, slots
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.startswith(b"GET /_count"):
                body = b"%d" % sum(SLOT.unpack_from(self.counts, i * SLOT.size)[0] for i in self.slots)
            else:
                offset = self.slot * SLOT.size
                SLOT.pack_into(self.counts, offset, SLOT.unpack_from(self.counts, offset)[0] + 1)
                body = self.name
            close = b"connection: close" in head.lower()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"Connection: close\r\n" if close else b"", body)
            )
            if close:
                self.transport.close()
                return


async def _worker(
    listeners: list[tuple[bytes, socket.socket]], counts: mmap.mmap, index: int, workers: int
) -> None:
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[object]] = set()

    def accept(listener: socket.socket, name: bytes, slot: int, slots: range) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker was first
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        made = loop.connect_accepted_socket(lambda: _Http(name, counts, slot, slots), conn)
        task: asyncio.Task[object] = loop.create_task(made)
        pending.add(task)
        task.add_done_callback(pending.discard)

    for b, (name, listener) in enumerate(listeners):
        slots = range(b * workers, (b + 1) * workers)
        loop.add_reader(listener.fileno(), accept, listener, name, b * workers + index, slots)
    await asyncio.Event().wait()


def serve(host: str, backends: list[tuple[bytes, int]], workers: int) -> None:
    """Fork `workers` processes serving every backend; return when one of them ends."""
    counts = mmap.mmap(-1, SLOT.size * workers * len(backends))
    listeners = []
    for name, port in backends:
        listener = socket.create_server((host, port), backlog=4096)
        listener.setblocking(False)
        listeners.append((name, listener))
    children = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                asyncio.run(_worker(listeners, counts, index, workers))
            finally:
                os._exit(1)
        children.append(pid)

    def stop(*_: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    os.wait()  # a worker gone: stop them all, the caller sees the exit
    stop()


def ask(host: str, port: int, path: str = "/", *, timeout: float = 1) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    return reply.partition(b"\r\n\r\n")[2]


def served(host: str, port: int) -> int:
    """How many requests the backend listening at host:port has served."""
    return int(ask(host, port, "/_count", timeout=5))


def names(host: str, port: int, expect: int, timeout: float) -> int:
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.add(ask(host, port))
        except OSError:
            time.sleep(0.1)
            continue
        if len(seen) >= expect:
            print(b" ".join(sorted(seen)).decode())
            return 0
    print(f"heard {sorted(seen)} from {host}:{port}, expected {expect} names", file=sys.stderr)
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_args = commands.add_parser("serve")
    serve_args.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    serve_args.add_argument("--host", default="0.0.0.0")  # noqa: S104 (the pod's own namespace)
    serve_args.add_argument("backends", nargs="+", metavar="NAME=PORT")
    names_args = commands.add_parser("names")
    names_args.add_argument("address", metavar="HOST:PORT")
    names_args.add_argument("--expect", type=int, required=True)
    names_args.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.command == "serve":
        backends = [(name.encode(), int(port)) for name, _, port in (b.partition("=") for b in args.backends)]
        serve(args.host, backends, max(1, args.workers))
    else:
        host, _, port = args.address.rpartition(":")
        sys.exit(names(host, int(port), args.expect, args.timeout))


if __name__ == "__main__":
    main()
