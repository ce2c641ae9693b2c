"""HorizontalPodAutoscaler (autoscaling/v2)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

from bus.meta import Base, ConditionStatus, Int32, Int64, Resource


class CrossVersionObjectReference(Base):
    kind: str
    name: str
    api_version: str = ""


class MetricTarget(Base):
    type: Literal["Utilization", "Value", "AverageValue"]
    value: str = ""
    average_value: str = ""
    average_utilization: Int32 | None = None


class MetricIdentifier(Base):
    name: str


class ResourceMetricSource(Base):
    name: str
    target: MetricTarget


class PodsMetricSource(Base):
    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(Base):
    type: Literal["Resource", "Pods"]
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None


class HPAScalingPolicy(Base):
    type: Literal["Pods", "Percent"]
    value: Int32
    period_seconds: Int32


class HPAScalingRules(Base):
    stabilization_window_seconds: Int32 | None = None
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[HPAScalingPolicy] = []


class HorizontalPodAutoscalerBehavior(Base):
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class HorizontalPodAutoscalerSpec(Base):
    scale_target_ref: CrossVersionObjectReference
    max_replicas: Int32
    min_replicas: Int32 = 1
    metrics: list[MetricSpec] = []
    behavior: HorizontalPodAutoscalerBehavior | None = None


class MetricValueStatus(Base):
    value: str = ""
    average_value: str = ""
    average_utilization: Int32 | None = None


class ResourceMetricStatus(Base):
    name: str
    current: MetricValueStatus


class PodsMetricStatus(Base):
    metric: MetricIdentifier
    current: MetricValueStatus


class MetricStatus(Base):
    type: Literal["Resource", "Pods"]
    resource: ResourceMetricStatus | None = None
    pods: PodsMetricStatus | None = None


class HorizontalPodAutoscalerCondition(Base):
    type: str
    status: ConditionStatus
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class HorizontalPodAutoscalerStatus(Base):
    observed_generation: Int64 = 0
    last_scale_time: datetime | None = None
    current_replicas: Int32 = 0
    desired_replicas: Int32 = 0
    current_metrics: list[MetricStatus] = []
    conditions: list[HorizontalPodAutoscalerCondition] = []


class HorizontalPodAutoscaler(Resource):
    API_VERSION: ClassVar[str] = "autoscaling/v2"
    spec: HorizontalPodAutoscalerSpec
    status: HorizontalPodAutoscalerStatus = msgspec.field(default_factory=HorizontalPodAutoscalerStatus)
