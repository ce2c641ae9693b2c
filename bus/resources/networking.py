"""Service and Endpoints (core/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, ObjectReference, Resource
from bus.resources.pod import IntOrString


class ServicePort(Base):
    port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"
    target_port: IntOrString | None = None
    node_port: Int32 | None = None


class ClientIPConfig(Base):
    timeout_seconds: Int32 | None = None


class SessionAffinityConfig(Base):
    client_ip: ClientIPConfig | None = msgspec.field(default=None, name="clientIP")


class ServiceSpec(Base):
    ports: list[ServicePort]
    selector: dict[str, str] = {}
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    session_affinity: Literal["None", "ClientIP"] = "None"
    session_affinity_config: SessionAffinityConfig | None = None


class ServiceCondition(Base):
    """Kubernetes' `metav1.Condition`, as a ServiceStatus carries it."""

    type: str
    status: ConditionStatus
    observed_generation: Int64 = 0
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class ServiceStatus(Base):
    conditions: list[ServiceCondition] = []


class Service(Resource):
    spec: ServiceSpec
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


class EndpointAddress(Base):
    ip: str
    hostname: str = ""
    node_name: str = ""
    target_ref: ObjectReference | None = None


class EndpointPort(Base):
    port: Int32
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"


class EndpointSubset(Base):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class Endpoints(Resource):
    subsets: list[EndpointSubset] = []
