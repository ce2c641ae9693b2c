"""Service and Endpoints (core/v1)."""

from __future__ import annotations

from typing import Literal

import msgspec

from bus.meta import Base, ObjectReference, Resource
from bus.resources.pod import IntOrString


class ServicePort(Base):
    port: int
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"
    target_port: IntOrString | None = None
    node_port: int | None = None


class ServiceSpec(Base):
    ports: list[ServicePort]
    selector: dict[str, str] = {}
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    session_affinity: Literal["None", "ClientIP"] = "None"


class ServiceStatus(Base):
    pass


class Service(Resource):
    spec: ServiceSpec
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


class EndpointAddress(Base):
    ip: str
    hostname: str = ""
    node_name: str = ""
    target_ref: ObjectReference | None = None


class EndpointPort(Base):
    port: int
    name: str = ""
    protocol: Literal["TCP", "UDP"] = "TCP"


class EndpointSubset(Base):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class Endpoints(Resource):
    subsets: list[EndpointSubset] = []
