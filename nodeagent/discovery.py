"""Service discovery through environment variables, with the kubelet's names and rules.

A container started after a Service of its pod's namespace exists gets, per Service `NAME`
(upper-cased, `-` turned into `_`):

    NAME_SERVICE_HOST            the Service's address
    NAME_SERVICE_PORT            the first port
    NAME_SERVICE_PORT_<PORT>     each named port
    NAME_PORT                    tcp://host:port of the first port (Docker links, as Kubernetes sets)
    NAME_PORT_<n>_<PROTO>        proto://host:port of each port, and its _PROTO, _PORT, _ADDR

Which address that is depends on the node's network mode (docs/networking.md):

- pod network: the Service's ClusterIP, as in Kubernetes (the node's nftables rules forward
  it); a headless Service, or one without an address, gets no variables, as in Kubernetes;
- host network (the default here): the address of the node the container runs on, since every
  node's userspace proxy listens there at each Service port.

Variables are computed at each start of a container (a restart sees Services created since),
and a container's own `env` entries override them, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable

from bus.resources import Service
from bus.resources.networking import HEADLESS


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def service_env(services: Iterable[Service], host: str, *, cluster_ips: bool = False) -> dict[str, str]:
    """The discovery variables for `services`: reached at `host` (the node address), or with
    `cluster_ips` (pod network mode) at each Service's ClusterIP, headless Services left out."""
    env: dict[str, str] = {}
    for service in sorted(services, key=lambda s: s.metadata.name):
        address = service.spec.cluster_ip if cluster_ips else host
        if service.spec.ports and address and address != HEADLESS:
            env.update(_variables(service, address))
    return env


def _variables(service: Service, host: str) -> dict[str, str]:
    prefix = env_name(service.metadata.name)
    env = {
        f"{prefix}_SERVICE_HOST": host,
        f"{prefix}_SERVICE_PORT": str(service.spec.ports[0].port),
    }
    for port in service.spec.ports:
        if port.name:
            env[f"{prefix}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
    for i, port in enumerate(service.spec.ports):
        proto = port.protocol.lower()
        url = f"{proto}://{_host_port(host, port.port)}"
        if i == 0:
            env[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{port.port}_{port.protocol.upper()}"
        env[link] = url
        env[f"{link}_PROTO"] = proto
        env[f"{link}_PORT"] = str(port.port)
        env[f"{link}_ADDR"] = host
    return env
