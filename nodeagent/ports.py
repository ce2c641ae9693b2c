"""Host ports for pods: host networking, with a port allocated per declared container port.

As Nomad does it: the container must listen on the port it is given (env `PORT`, `PORT_<NAME>`).
A declared `hostPort` is used as is (and must be free); otherwise a free port is taken from the
agent's range. A port is free when we have not handed it out and we can bind it on the node's
address right now.
"""

from __future__ import annotations

import socket

from nodeagent.runtime import PortBinding


class PortInUse(Exception):
    """A declared hostPort is taken on this node (Kubernetes reports this at scheduling time)."""


class PortAllocator:
    def __init__(self, address: str, first: int, last: int) -> None:
        self.address = address
        self.first, self.last = first, last
        self.owner: dict[int, str] = {}  # host port -> pod uid
        self._next = first

    def allocate(self, pod_uid: str, wanted: list[tuple[str, int, int | None]]) -> list[PortBinding]:
        """Host ports for one pod's (name, containerPort, hostPort or None) list.

        PortInUse if a fixed hostPort is taken (then nothing is kept for the pod).
        """
        mine = {port for port, uid in self.owner.items() if uid == pod_uid}
        bindings: list[PortBinding] = []
        for name, container_port, host_port in wanted:
            if host_port is not None:
                if self.owner.get(host_port) not in (None, pod_uid) or (
                    host_port not in mine and not self._bindable(host_port)
                ):
                    self.release(pod_uid)
                    raise PortInUse(f"host port {host_port} is already in use on {self.address}")
                port = host_port
            else:
                port = self._free_port()
            self.owner[port] = pod_uid
            bindings.append(PortBinding(container_port=container_port, host_port=port, name=name))
        return bindings

    def adopt(self, pod_uid: str, bindings: list[PortBinding]) -> None:
        """Record ports a running pod already holds (after an agent restart)."""
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
