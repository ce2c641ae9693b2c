"""Rules of HorizontalPodAutoscaler (autoscaling/v2).

The autoscaler only understands per-pod CPU and memory (Resource metrics) and per-pod custom
values (Pods metrics); a metric it could not compute is rejected here rather than ignored at run
time, and scaling policies are bounded so that one manifest cannot freeze or thrash a workload.
"""

from __future__ import annotations

from bus.errors import StatusCause
from bus.resources.autoscaling import (
    HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior,
    HPAScalingRules,
    MetricSpec,
    MetricTarget,
    PodsMetricSource,
    ResourceMetricSource,
)
from bus.validation.rules import (
    at_least,
    at_most,
    forbidden,
    invalid_value,
    quantity,
    required,
    unsupported,
)
from bus.validation.schema import join

METRIC_RESOURCES = ("cpu", "memory")
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600


def horizontal_pod_autoscaler(hpa: HorizontalPodAutoscaler) -> list[StatusCause]:
    spec = hpa.spec
    causes: list[StatusCause] = []
    for field, value in (("kind", spec.scale_target_ref.kind), ("name", spec.scale_target_ref.name)):
        if not value:
            causes.append(required(f"spec.scaleTargetRef.{field}"))
    causes += at_least("spec.minReplicas", spec.min_replicas, 1)
    if spec.max_replicas < 1:
        causes.append(invalid_value("spec.maxReplicas", spec.max_replicas, "must be greater than 0"))
    elif spec.max_replicas < spec.min_replicas:
        causes.append(
            invalid_value(
                "spec.maxReplicas", spec.max_replicas, "must be greater than or equal to minReplicas"
            )
        )
    for i, metric in enumerate(spec.metrics):
        causes += _metric(f"spec.metrics[{i}]", metric)
    if spec.behavior is not None:
        causes += _behavior("spec.behavior", spec.behavior)
    return causes


def _metric(path: str, metric: MetricSpec) -> list[StatusCause]:
    """The source named by `type` must be set, and no other."""
    given, other = (
        (metric.resource, metric.pods) if metric.type == "Resource" else (metric.pods, metric.resource)
    )
    causes = [forbidden(path, "must populate the given metric source only")] if other is not None else []
    source_path = join(path, metric.type.lower())
    match given:
        case None:
            causes.append(required(source_path, "must populate information for the given metric source"))
        case ResourceMetricSource():
            causes += _resource_source(source_path, given)
        case PodsMetricSource():
            causes += _pods_source(source_path, given)
    return causes


def _resource_source(path: str, source: ResourceMetricSource) -> list[StatusCause]:
    causes: list[StatusCause] = []
    if source.name not in METRIC_RESOURCES:
        causes.append(unsupported(join(path, "name"), source.name, METRIC_RESOURCES))
    if source.target.type == "Value":
        causes.append(
            unsupported(join(path, "target.type"), source.target.type, ["Utilization", "AverageValue"])
        )
    return causes + _target(join(path, "target"), source.target)


def _pods_source(path: str, source: PodsMetricSource) -> list[StatusCause]:
    causes = [] if source.metric.name else [required(join(path, "metric.name"))]
    if source.target.type != "AverageValue":
        causes.append(unsupported(join(path, "target.type"), source.target.type, ["AverageValue"]))
    return causes + _target(join(path, "target"), source.target)


def _target(path: str, target: MetricTarget) -> list[StatusCause]:
    """The field that goes with the target type is set, and every value given is positive."""
    causes: list[StatusCause] = []
    if target.type == "Utilization" and target.average_utilization is None:
        causes.append(required(join(path, "averageUtilization"), "must be set when `type` is 'Utilization'"))
    if target.average_utilization is not None and target.average_utilization < 1:
        causes.append(
            invalid_value(
                join(path, "averageUtilization"), target.average_utilization, "must be greater than 0"
            )
        )
    for field, value, needed in (
        ("value", target.value, target.type == "Value"),
        ("averageValue", target.average_value, target.type == "AverageValue"),
    ):
        if needed and not value:
            causes.append(required(join(path, field), f"must be set when `type` is '{target.type}'"))
        if value:
            causes += quantity(join(path, field), value, positive=True)
    return causes


def _behavior(path: str, behavior: HorizontalPodAutoscalerBehavior) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for field, rules in (("scaleUp", behavior.scale_up), ("scaleDown", behavior.scale_down)):
        if rules is not None:
            causes += _scaling_rules(join(path, field), rules)
    return causes


def _scaling_rules(path: str, rules: HPAScalingRules) -> list[StatusCause]:
    causes: list[StatusCause] = []
    window = rules.stabilization_window_seconds
    if window is not None:
        causes += at_least(join(path, "stabilizationWindowSeconds"), window, 0)
        causes += at_most(join(path, "stabilizationWindowSeconds"), window, MAX_STABILIZATION_WINDOW_SECONDS)
    for i, policy in enumerate(rules.policies):
        item = f"{join(path, 'policies')}[{i}]"
        if policy.value <= 0:
            causes.append(invalid_value(join(item, "value"), policy.value, "must be greater than zero"))
        if policy.period_seconds <= 0:
            causes.append(
                invalid_value(join(item, "periodSeconds"), policy.period_seconds, "must be greater than zero")
            )
        causes += at_most(join(item, "periodSeconds"), policy.period_seconds, MAX_PERIOD_SECONDS)
    return causes
