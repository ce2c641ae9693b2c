"""Host ports for pods: host networking, with a port allocated per declared container port.

As Nomad does it: the container must listen on the port it is given (env `PORT`, `PORT_<NAME>`).
A declared `hostPort` is used as is (and must be free); otherwise a free port is taken from the
agent's range. A port is free when we have not handed it out and we can bind it on the node's
address right now.

The ports a pod's running containers hold cannot be bound, but they are the pod's: a restarted
agent gives them back to their pod (`adopt`) before it allocates anything, and a port the pod had
before (its status says so) is given again while it is free, so that a container restarted after
the agent's restart keeps its port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from nodeagent.runtime import PortBinding


@dataclass(frozen=True)
class WantedPort:
    """A declared container port: `host_port` if declared (that one or none); else `before`, the
    port it had before, if still free; else any free one."""

    name: str
    container_port: int
    host_port: int | None = None
    before: int | None = None


class PortInUse(Exception):
    """A declared hostPort is taken on this node (Kubernetes reports this at scheduling time)."""


class PortAllocator:
    def __init__(self, address: str, first: int, last: int) -> None:
        self.address = address
        self.first, self.last = first, last
        self.owner: dict[int, str] = {}  # host port -> pod uid
        self._next = first

    def allocate(self, pod_uid: str, wanted: list[WantedPort]) -> list[PortBinding]:
        """Host ports for one pod's declared ports; the ones `adopt`ed for it are its own.

        PortInUse if a declared hostPort is taken (then nothing is kept for the pod).
        """
        mine = {port for port, uid in self.owner.items() if uid == pod_uid}
        bindings: list[PortBinding] = []
        for want in wanted:
            if want.host_port is not None:
                port = want.host_port
                if not self._available(port, pod_uid, mine):
                    self.release(pod_uid)
                    raise PortInUse(f"host port {port} is already in use on {self.address}")
            elif want.before is not None and self._available(want.before, pod_uid, mine):
                port = want.before
            else:
                port = self._free_port()
            self.owner[port] = pod_uid
            bindings.append(PortBinding(container_port=want.container_port, host_port=port, name=want.name))
        return bindings

    def _available(self, port: int, pod_uid: str, mine: set[int]) -> bool:
        if port in mine:
            return True
        return self.owner.get(port) in (None, pod_uid) and self._bindable(port)

    def adopt(self, pod_uid: str, bindings: Iterable[PortBinding]) -> None:
        """Record ports a pod's containers already hold (after an agent restart)."""
        for binding in bindings:
            self.owner[binding.host_port] = pod_uid

    def release(self, pod_uid: str) -> None:
        for port in [p for p, uid in self.owner.items() if uid == pod_uid]:
            del self.owner[port]

    def _free_port(self) -> int:
        span = self.last - self.first + 1
        for _ in range(span):
            port = self._next
            self._next = self.first + (self._next - self.first + 1) % span
            if port not in self.owner and self._bindable(port):
                return port
        raise PortInUse(f"no free port left in {self.first}-{self.last} on {self.address}")

    def _bindable(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.address, port))
            except OSError:
                return False
        return True


def port_env(bindings: list[PortBinding]) -> dict[str, str]:
    """`PORT` (the first declared port) and `PORT_<NAME>` for each named one."""
    env: dict[str, str] = {}
    if bindings:
        env["PORT"] = str(bindings[0].host_port)
    for binding in bindings:
        if binding.name:
            env[f"PORT_{binding.name.upper().replace('-', '_')}"] = str(binding.host_port)
    return env
