"""Event (core/v1) and Lease (coordination.k8s.io/v1): records rather than desired state."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, Int32, ObjectReference, Resource


class EventSource(Base):
    component: str = ""
    host: str = ""


class Event(Resource):
    involved_object: ObjectReference
    reason: str = ""
    message: str = ""
    type: Literal["Normal", "Warning"] = "Normal"
    source: EventSource = msgspec.field(default_factory=EventSource)
    count: Int32 = 1
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    reporting_component: str = ""
    reporting_instance: str = ""


class LeaseSpec(Base):
    holder_identity: str = ""
    lease_duration_seconds: Int32 | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    lease_transitions: Int32 = 0


class Lease(Resource):
    API_VERSION: ClassVar[str] = "coordination.k8s.io/v1"
    spec: LeaseSpec = msgspec.field(default_factory=LeaseSpec)
