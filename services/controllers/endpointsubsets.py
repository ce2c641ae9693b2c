"""What a Service's Endpoints should hold, computed from its pods (pure, no I/O).

A pod on the pod network (its `status.podIP` is its own, not its node's) is reached as in
Kubernetes: at its pod IP, on the container port the `targetPort` names (a number needs no
declaration; a name must be declared). A pod on the host's network is reached by Kubernetes'
rules, with host networking: a pod counts when it is bound, has a node address
(`status.hostIP`), is not terminating and has not finished. Its address is that node address,
and each Service port resolves to the host port the node agent allocated for the container port
that the `targetPort` names (by number or by name, and protocol), as pod status `hostPorts`
reports it. Ready pods go to `addresses`, the others to `notReadyAddresses`.

Pods on one node share an address and differ by port, so, as Kubernetes' `RepackSubsets` does,
there is one subset per distinct set of ports. A pod that declares no container port for a
`targetPort` is left out of that Service port (Kubernetes does the same silently; here the
caller reports it); a declared port the agent has not reported yet is simply not there yet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from bus.meta import ObjectReference, is_true
from bus.resources import Pod, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort

Protocol = Literal["TCP", "UDP"]
PortKey = tuple[str, int, Protocol]  # (service port name, host port, protocol)


@dataclass(frozen=True)
class MissingPort:
    """A pod that declares no container port for a Service port's targetPort."""

    pod: str
    uid: str
    service_port: str  # the Service port's name, or its number when unnamed
    target: int | str
    protocol: str

    def describe(self) -> str:
        target = f'named "{self.target}"' if isinstance(self.target, str) else str(self.target)
        return (
            f'pod "{self.pod}" declares no container port {target} ({self.protocol}), the targetPort of '
            f"service port {self.service_port}: the pod is left out of it"
        )


def selects(service: Service, pod: Pod) -> bool:
    """Whether the Service's selector picks the pod (an empty selector picks none: such a Service's
    Endpoints are not managed)."""
    selector = service.spec.selector
    return (
        bool(selector)
        and pod.metadata.namespace == service.metadata.namespace
        and all(pod.metadata.labels.get(key) == value for key, value in selector.items())
    )


def serves(pod: Pod) -> bool:
    """Whether the pod belongs in Endpoints at all (ready or not)."""
    return (
        bool(pod.spec.node_name and pod.status.host_ip)
        and pod.metadata.deletion_timestamp is None
        and pod.status.phase not in ("Succeeded", "Failed")
    )


def target_of(port: ServicePort) -> int | str:
    """The targetPort, which defaults to the port's own number."""
    return port.target_port if port.target_port is not None else port.port


def on_pod_network(pod: Pod) -> bool:
    return bool(pod.status.pod_ip) and pod.status.pod_ip != pod.status.host_ip


def host_port(pod: Pod, port: ServicePort) -> int | MissingPort | None:
    """The port serving `port` on this pod (on the pod network its container port, else the host
    port); MissingPort if no container declares the target (a number needs no declaration on the
    pod network), None if it is declared but its host port is not reported yet."""
    target = target_of(port)
    pod_network = on_pod_network(pod)
    for container in pod.spec.containers:
        for declared in container.ports:
            if declared.protocol != port.protocol:
                continue
            if declared.name == target if isinstance(target, str) else declared.container_port == target:
                if pod_network:
                    return declared.container_port
                for mapping in pod.status.host_ports:
                    if (mapping.container, mapping.container_port, mapping.protocol) == (
                        container.name,
                        declared.container_port,
                        declared.protocol,
                    ):
                        return mapping.host_port
                return None
    if pod_network and isinstance(target, int):
        return target
    return MissingPort(
        pod=pod.metadata.name,
        uid=pod.metadata.uid,
        service_port=f'"{port.name}"' if port.name else str(port.port),
        target=target,
        protocol=port.protocol,
    )


def hostname_in(service: Service, pod: Pod) -> str:
    """The pod's hostname in the Endpoints of a Service that selects it: set when the pod names the
    Service as its `spec.subdomain`, so that DNS answers `<hostname>.<subdomain>.<ns>.svc.<domain>`."""
    return pod.spec.hostname if pod.spec.subdomain == service.metadata.name else ""


def address_of(pod: Pod, *, hostname: str = "") -> EndpointAddress:
    return EndpointAddress(
        ip=pod.status.pod_ip if on_pod_network(pod) else pod.status.host_ip,
        hostname=hostname,
        node_name=pod.spec.node_name,
        target_ref=ObjectReference(
            kind="Pod", namespace=pod.metadata.namespace, name=pod.metadata.name, uid=pod.metadata.uid
        ),
    )


def _address_order(address: EndpointAddress) -> tuple[str, str]:
    return (address.ip, address.target_ref.name if address.target_ref else "")


def endpoint_subsets(service: Service, pods: list[Pod]) -> tuple[list[EndpointSubset], list[MissingPort]]:
    """The subsets of the Service's Endpoints (in a stable order, so that an unchanged set compares
    equal), and the pods left out of a port because they do not declare it."""
    groups: dict[tuple[PortKey, ...], tuple[list[EndpointAddress], list[EndpointAddress]]] = defaultdict(
        lambda: ([], [])
    )
    missing: list[MissingPort] = []
    for pod in pods:
        if not selects(service, pod) or not serves(pod):
            continue
        ports: set[PortKey] = set()
        for port in service.spec.ports:
            found = host_port(pod, port)
            if isinstance(found, MissingPort):
                missing.append(found)
            elif found is not None:
                ports.add((port.name, found, port.protocol))
        if not ports:
            continue
        ready, not_ready = groups[tuple(sorted(ports))]
        address = address_of(pod, hostname=hostname_in(service, pod))
        (ready if is_true(pod.status.conditions) else not_ready).append(address)
    subsets = [
        EndpointSubset(
            addresses=sorted(ready, key=_address_order),
            not_ready_addresses=sorted(not_ready, key=_address_order),
            ports=[EndpointPort(name=name, port=number, protocol=protocol) for name, number, protocol in key],
        )
        for key, (ready, not_ready) in sorted(groups.items())
    ]
    return subsets, missing
