"""Service discovery through environment variables, with the kubelet's names and rules.

A container started after a Service of its pod's namespace exists gets, per Service `NAME`
(upper-cased, `-` turned into `_`):

    NAME_SERVICE_HOST            the address of the node the container runs on (its service proxy)
    NAME_SERVICE_PORT            the first port
    NAME_SERVICE_PORT_<PORT>     each named port
    NAME_PORT                    tcp://host:port of the first port (Docker links, as Kubernetes sets)
    NAME_PORT_<n>_<PROTO>        proto://host:port of each port, and its _PROTO, _PORT, _ADDR

Kubernetes points HOST at the Service's cluster IP; steersman has none, and every node's proxy
listens on the node address at each Service port, so the container's own node address serves.
Variables are computed at each start of a container (a restart sees Services created since),
and a container's own `env` entries override them, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable

from bus.resources import Service


def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def service_env(services: Iterable[Service], host: str) -> dict[str, str]:
    """The discovery variables for `services`, reached at `host` (the node address)."""
    env: dict[str, str] = {}
    for service in sorted(services, key=lambda s: s.metadata.name):
        if not service.spec.ports:
            continue
        prefix = env_name(service.metadata.name)
        env[f"{prefix}_SERVICE_HOST"] = host
        env[f"{prefix}_SERVICE_PORT"] = str(service.spec.ports[0].port)
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
