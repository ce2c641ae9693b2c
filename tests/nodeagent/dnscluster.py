"""A fixed set of Services and Endpoints that the cluster DNS tests ask about."""

from __future__ import annotations

from bus.meta import ObjectMeta
from bus.resources import Endpoints, Service
from bus.resources.networking import EndpointAddress, EndpointPort, EndpointSubset, ServicePort, ServiceSpec
from nodeagent.dns import Snapshot


def service(name: str, cluster_ip: str, *ports: ServicePort, namespace: str = "default") -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=ServiceSpec(ports=list(ports), selector={"app": name}, cluster_ip=cluster_ip),
    )


def endpoints(
    name: str,
    ready: list[tuple[str, str]],
    ports: list[EndpointPort],
    *,
    not_ready: list[tuple[str, str]] | None = None,
) -> Endpoints:
    """`ready` and `not_ready` as (ip, hostname) pairs."""
    return Endpoints(
        metadata=ObjectMeta(name=name, namespace="default"),
        subsets=[
            EndpointSubset(
                addresses=[EndpointAddress(ip=ip, hostname=host) for ip, host in ready],
                not_ready_addresses=[EndpointAddress(ip=ip, hostname=host) for ip, host in not_ready or []],
                ports=ports,
            )
        ],
    )


HTTP = ServicePort(port=80, name="http")
PG = ServicePort(port=5432, name="pg", target_port=5432)


def cluster() -> Snapshot:
    return Snapshot(
        services=[
            service("web", "10.96.0.10", HTTP, ServicePort(port=53, name="dns", protocol="UDP")),
            service("plain", "10.96.0.11", ServicePort(port=8080)),
            service("db", "None", PG),
            service("empty", "None", HTTP),
            service("lonely", "None", HTTP),
            service("pending", "", HTTP),
            service("web", "10.96.0.20", HTTP, namespace="other"),
        ],
        endpoints=[
            endpoints(
                "db",
                [("10.244.1.5", "db-0"), ("10.244.2.6", "db-1"), ("10.244.1.7", "")],
                [EndpointPort(port=5432, name="pg")],
                not_ready=[("10.244.3.8", "db-2")],
            ),
            Endpoints(metadata=ObjectMeta(name="empty", namespace="default")),
            endpoints("web", [("10.244.1.9", "")], [EndpointPort(port=8080, name="http")]),
        ],
    )


def headless_of(count: int) -> Snapshot:
    """One headless Service `many` with `count` ready endpoints (10.244.0.1, ...)."""
    ready = [(f"10.244.{i // 250}.{i % 250 + 1}", "") for i in range(count)]
    return Snapshot(
        services=[service("many", "None", HTTP)],
        endpoints=[endpoints("many", ready, [EndpointPort(port=8080, name="http")])],
    )
