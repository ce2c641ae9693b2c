"""Services and Endpoints as the feed gives them, for the Service rules' tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from bus.resources import Endpoints, Service

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def service(
    name: str,
    cluster_ip: str,
    *ports: dict[str, Any],
    ns: str = "default",
    type_: str = "ClusterIP",
    affinity: int | None = None,
    age: int = 0,
    rv: int = 1,
) -> Service:
    """A Service; `ports` as in a manifest (default one TCP port 80 named http); `affinity`:
    ClientIP affinity with that timeout (0: Kubernetes' default); `age`: seconds since creation."""
    spec: dict[str, Any] = {
        "clusterIP": cluster_ip,
        "type": type_,
        "ports": list(ports) or [{"name": "http", "port": 80}],
    }
    if affinity is not None:
        spec["sessionAffinity"] = "ClientIP"
        if affinity:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    created = (EPOCH - timedelta(seconds=age)).isoformat()
    meta = {"name": name, "namespace": ns, "resourceVersion": str(rv), "creationTimestamp": created}
    return msgspec.convert({"metadata": meta, "spec": spec}, Service)


def endpoints(
    name: str,
    ips: list[str],
    *,
    port: int = 8080,
    port_name: str = "http",
    protocol: str = "TCP",
    not_ready: list[str] | None = None,
    ns: str = "default",
    rv: int = 1,
) -> Endpoints:
    subset: dict[str, Any] = {
        "addresses": [{"ip": ip} for ip in ips],
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
    }
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    meta = {"name": name, "namespace": ns, "resourceVersion": str(rv)}
    return msgspec.convert({"metadata": meta, "subsets": [subset]}, Endpoints)


def by_key(*items: Endpoints) -> dict[tuple[str, str], Endpoints]:
    return {(e.metadata.namespace, e.metadata.name): e for e in items}
