"""Workload controllers: ReplicaSet and Deployment (apps/v1)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, ConditionStatus, LabelSelector, Resource
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
    replicas: int = 1
    min_ready_seconds: int = 0


class ReplicaSetStatus(Base):
    replicas: int = 0
    fully_labeled_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    observed_generation: int = 0
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
    replicas: int = 1
    strategy: DeploymentStrategy = msgspec.field(default_factory=DeploymentStrategy)
    min_ready_seconds: int = 0
    revision_history_limit: int = 10
    progress_deadline_seconds: int = 600
    paused: bool = False


class DeploymentStatus(Base):
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    unavailable_replicas: int = 0
    conditions: list[DeploymentCondition] = []
    collision_count: int = 0


class Deployment(Resource):
    API_VERSION: ClassVar[str] = "apps/v1"
    spec: DeploymentSpec
    status: DeploymentStatus = msgspec.field(default_factory=DeploymentStatus)
