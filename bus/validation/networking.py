"""Rules of Service, Endpoints, IPAddress and NodePort.

Ports are what the node proxies listen on and dial, so every one must be a real TCP/UDP port;
port names must be present and unique as soon as there is more than one, because targetPorts,
endpoints and `<NAME>_SERVICE_PORT_<PORT>` variables refer to ports by name.

The cluster is single-stack IPv4: a Service's clusterIP is `None` (headless) or one IPv4
address, `clusterIPs` holds at most that one, and dual stack cannot be required. Whether an
address lies in the service CIDR and is free is the API's to say (services/api/clusterips.py),
and so is whether a nodePort lies in the API's range and is free (services/api/nodeports.py):
these rules see one object, not the store.
"""

from __future__ import annotations

import ipaddress

from bus.errors import StatusCause
from bus.resources.networking import (
    HEADLESS,
    NODE_PORT_TYPES,
    EndpointAddress,
    Endpoints,
    IPAddress,
    NodePort,
    ParentReference,
    Service,
    ServicePort,
    ServiceSpec,
)
from bus.validation.rules import (
    dns1123_label,
    dns1123_subdomain,
    duplicate,
    forbidden,
    formatted,
    invalid_value,
    label_map,
    port_number,
    port_number_or_name,
    required,
)
from bus.validation.schema import join

DEFAULT_NODE_PORT_RANGE = "30000-32767"  # Kubernetes' `--service-node-port-range`


def node_port_range(text: str) -> tuple[int, int]:
    """The first and last port of a `--service-node-port-range` (`30000-32767`); ValueError
    saying what is wrong with it."""
    low_text, dash, high_text = text.partition("-")
    if not dash or not low_text.isdecimal() or not high_text.isdecimal():
        raise ValueError(f"{text!r} is not a port range LOW-HIGH (e.g. {DEFAULT_NODE_PORT_RANGE})")
    low, high = int(low_text), int(high_text)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{text!r}: the ports must be between 1 and 65535, the first not above the last")
    return low, high


def service(svc: Service) -> list[StatusCause]:
    spec = svc.spec
    causes = label_map("spec.selector", spec.selector) + _cluster_ips(spec)
    for i, ingress in enumerate(svc.status.load_balancer.ingress):
        causes += formatted(f"status.loadBalancer.ingress[{i}].ip", ingress.ip, ipv4_address)
    if not spec.ports:
        return [*causes, required("spec.ports")]
    causes += _port_names("spec.ports", [port.name for port in spec.ports])
    node_ports: set[int] = set()
    for i, port in enumerate(spec.ports):
        item = f"spec.ports[{i}]"
        causes += _service_port(item, port, service_type=spec.type)
        if port.node_port is not None:
            if port.node_port in node_ports:
                causes.append(duplicate(join(item, "nodePort"), port.node_port))
            node_ports.add(port.node_port)
    return causes


def _service_port(path: str, port: ServicePort, *, service_type: str) -> list[StatusCause]:
    causes = port_number(join(path, "port"), port.port)
    if port.target_port is not None:
        causes += port_number_or_name(join(path, "targetPort"), port.target_port)
    if port.node_port is not None:
        node_port_path = join(path, "nodePort")
        if service_type not in NODE_PORT_TYPES:
            causes.append(forbidden(node_port_path, f"may not be used when `type` is '{service_type}'"))
        else:
            causes += port_number(node_port_path, port.node_port)
    return causes


def requested_cluster_ip(spec: ServiceSpec) -> str:
    """The address a manifest asks for: `clusterIP`, else the first of `clusterIPs` (as
    Kubernetes defaults one from the other); "" when it leaves the choice to the API."""
    return spec.cluster_ip or next(iter(spec.cluster_ips), "")


def _cluster_ips(spec: ServiceSpec) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if spec.cluster_ip:
        causes += formatted("spec.clusterIP", spec.cluster_ip, _cluster_ip)
    for i, address in enumerate(spec.cluster_ips):
        causes += formatted(f"spec.clusterIPs[{i}]", address, _cluster_ip)
    if len(spec.cluster_ips) > 1:
        causes.append(
            invalid_value(
                "spec.clusterIPs", spec.cluster_ips, "may specify no more than one IP for each IP family"
            )
        )
    if spec.cluster_ip and spec.cluster_ips and spec.cluster_ips[0] != spec.cluster_ip:
        causes.append(
            invalid_value("spec.clusterIPs", spec.cluster_ips, "first value must match `clusterIP`")
        )
    if len(spec.ip_families) > 1:
        causes.append(duplicate("spec.ipFamilies[1]", spec.ip_families[1]))
    if spec.ip_family_policy == "RequireDualStack":
        causes.append(
            invalid_value(
                "spec.ipFamilyPolicy",
                spec.ip_family_policy,
                "this cluster is not configured for dual-stack services",
            )
        )
    if requested_cluster_ip(spec) == HEADLESS and spec.type in NODE_PORT_TYPES:
        causes.append(
            invalid_value("spec.clusterIP", HEADLESS, f"may not be set to 'None' for {spec.type} services")
        )
    return causes


def _cluster_ip(value: str) -> list[str]:
    if value == HEADLESS:
        return []
    return ipv4_address(value)


def ipv4_address(value: str) -> list[str]:
    """An IPv4 address in its canonical form (`10.96.0.10`; no leading zeros)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    if address.version != 4:
        return ["must be an IPv4 address: this cluster is single-stack IPv4"]
    return [] if str(address) == value else [f'must be in canonical form ("{address}")']


def ip_address(obj: IPAddress) -> list[StatusCause]:
    """Named by the address it records, and pointing at its owner."""
    causes: list[StatusCause] = []
    if obj.metadata.generate_name:
        causes.append(forbidden("metadata.generateName", "an IPAddress is named by its address"))
    return causes + _parent_ref(obj.spec.parent_ref)


def node_port(obj: NodePort) -> list[StatusCause]:
    """Named by the port it records, and pointing at its owner."""
    causes: list[StatusCause] = []
    if obj.metadata.generate_name:
        causes.append(forbidden("metadata.generateName", "a NodePort is named by its port number"))
    return causes + _parent_ref(obj.spec.parent_ref)


def port_number_name(value: str) -> list[str]:
    """A port number in decimal, as a NodePort's name (`30080`; no leading zeros)."""
    if not value.isascii() or not value.isdigit() or str(int(value)) != value or not 1 <= int(value) <= 65535:
        return ["must be a port number between 1 and 65535 in decimal, without leading zeros"]
    return []


def _parent_ref(ref: ParentReference) -> list[StatusCause]:
    causes = formatted("spec.parentRef.resource", ref.resource, dns1123_subdomain)
    causes += formatted("spec.parentRef.name", ref.name, dns1123_subdomain)
    if ref.group:
        causes += formatted("spec.parentRef.group", ref.group, dns1123_subdomain)
    if ref.namespace:
        causes += formatted("spec.parentRef.namespace", ref.namespace, dns1123_label)
    return causes


def _port_names(path: str, names: list[str]) -> list[StatusCause]:
    """Names: DNS labels when given, required when there are several ports, and unique."""
    causes: list[StatusCause] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        name_path = f"{path}[{i}].name"
        if not name:
            if len(names) > 1:
                causes.append(required(name_path))
            continue
        causes += formatted(name_path, name, dns1123_label)
        if name in seen:
            causes.append(duplicate(name_path, name))
        seen.add(name)
    return causes


def endpoints(ep: Endpoints) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for i, subset in enumerate(ep.subsets):
        item = f"subsets[{i}]"
        for field, addresses in (
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ):
            for j, address in enumerate(addresses):
                causes += _address(f"{join(item, field)}[{j}]", address)
        causes += _port_names(join(item, "ports"), [port.name for port in subset.ports])
        for j, port in enumerate(subset.ports):
            causes += port_number(f"{join(item, 'ports')}[{j}].port", port.port)
    return causes


def _address(path: str, address: EndpointAddress) -> list[StatusCause]:
    try:
        ipaddress.ip_address(address.ip)
    except ValueError:
        return [
            invalid_value(
                join(path, "ip"), address.ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            )
        ]
    return []
