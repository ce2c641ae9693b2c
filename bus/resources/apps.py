"""Workload controllers: ReplicaSet and Deployment (apps/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, LabelSelector, Resource
from bus.resources.pod import IntOrString, PodTemplateSpec


class ReplicaSetCondition(Base):
    type: str
    status: ConditionStatus
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class ReplicaSetSpec(Base):
    selector: LabelSelector
    template: PodTemplateSpec
    replicas: Int32 = 1
    min_ready_seconds: Int32 = 0


class ReplicaSetStatus(Base):
    replicas: Int32 = 0
    fully_labeled_replicas: Int32 = 0
    ready_replicas: Int32 = 0
    available_replicas: Int32 = 0
    observed_generation: Int64 = 0
    conditions: list[ReplicaSetCondition] = []


class ReplicaSet(Resource):
    API_VERSION: ClassVar[str] = "apps/v1"
    spec: ReplicaSetSpec
    status: ReplicaSetStatus = msgspec.field(default_factory=ReplicaSetStatus)


class RollingUpdateDeployment(Base):
    max_surge: IntOrString = "25%"
    max_unavailable: IntOrString = "25%"


class DeploymentStrategy(Base):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdateDeployment | None = None


class DeploymentCondition(Base):
    type: str
    status: ConditionStatus
    last_update_time: datetime | None = None
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class DeploymentSpec(Base):
    selector: LabelSelector
    template: PodTemplateSpec
    replicas: Int32 = 1
    strategy: DeploymentStrategy = msgspec.field(default_factory=DeploymentStrategy)
    min_ready_seconds: Int32 = 0
    revision_history_limit: Int32 = 10
    progress_deadline_seconds: Int32 = 600
    paused: bool = False


class DeploymentStatus(Base):
    observed_generation: Int64 = 0
    replicas: Int32 = 0
    updated_replicas: Int32 = 0
    ready_replicas: Int32 = 0
    available_replicas: Int32 = 0
    unavailable_replicas: Int32 = 0
    conditions: list[DeploymentCondition] = []
    collision_count: Int32 = 0


class Deployment(Resource):
    API_VERSION: ClassVar[str] = "apps/v1"
    spec: DeploymentSpec
    status: DeploymentStatus = msgspec.field(default_factory=DeploymentStatus)
