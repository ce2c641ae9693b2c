"""Rules of Service and Endpoints.

Ports are what the node proxies listen on and dial, so every one must be a real TCP/UDP port;
port names must be present and unique as soon as there is more than one, because targetPorts,
endpoints and `<NAME>_SERVICE_PORT_<PORT>` variables refer to ports by name.
"""

from __future__ import annotations

import ipaddress

from bus.errors import StatusCause
from bus.resources.networking import EndpointAddress, Endpoints, Service, ServicePort
from bus.validation.rules import (
    dns1123_label,
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

NODE_PORT_RANGE = (30000, 32767)


def service(svc: Service) -> list[StatusCause]:
    spec = svc.spec
    causes = label_map("spec.selector", spec.selector)
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
        low, high = NODE_PORT_RANGE
        if service_type != "NodePort":
            causes.append(forbidden(node_port_path, f"may not be used when `type` is '{service_type}'"))
        elif not low <= port.node_port <= high:
            detail = f"provided port is not in the valid range. The range of valid ports is {low}-{high}"
            causes.append(invalid_value(node_port_path, port.node_port, detail))
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
