"""Evaluating one metric of a HorizontalPodAutoscaler over the pods of its target.

Two sources: `Resource` metrics (cpu, memory) from the node agents' usage samples, compared with
the pods' requests (Utilization) or with a per-pod quantity (AverageValue); and the `Pods` metric
`requests_per_second`, the connections the service proxies sent each pod, per second.
A metric that cannot be computed raises MetricFailure with the reason Kubernetes reports
(FailedGetResourceMetric, FailedGetPodsMetric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from bus.meta import is_true
from bus.quantity import cpu_millis, memory_bytes, parse_quantity
from bus.resources import Pod
from bus.resources.autoscaling import (
    MetricIdentifier,
    MetricSpec,
    MetricStatus,
    MetricValueStatus,
    PodsMetricSource,
    PodsMetricStatus,
    ResourceMetricSource,
    ResourceMetricStatus,
)
from services.controllers.podmetrics import REQUESTS_PER_SECOND, PodMetricsCache
from services.controllers.replicacalc import NoMetrics, PodValue, Proposal, propose


class MetricFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Evaluation:
    proposal: Proposal
    status: MetricStatus
    name: str  # how events and conditions name the metric


def evaluate(spec: MetricSpec, pods: list[Pod], current: int, cache: PodMetricsCache) -> Evaluation:
    if spec.resource is not None:
        return _resource(spec.resource, pods, current, cache)
    assert spec.pods is not None  # validation guarantees one source
    return _pods(spec.pods, pods, current, cache)


def quantity(value: float, unit: str = "") -> str:
    """A value as a Kubernetes quantity: whole numbers plain, others in thousandths (`1500m`)."""
    if unit == "bytes":
        return f"{round(value / (1 << 20))}Mi" if value >= 1 << 20 else str(round(value))
    if unit == "millicores":
        return f"{round(value)}m"
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _resource(
    source: ResourceMetricSource, pods: list[Pod], current: int, cache: PodMetricsCache
) -> Evaluation:
    resource, target = source.name, source.target
    parse = cpu_millis if resource == "cpu" else memory_bytes
    unit = "millicores" if resource == "cpu" else "bytes"
    values: list[PodValue] = []
    for pod in pods:
        usage = cache.pod(pod.metadata.namespace, pod.metadata.name)
        value = None if usage is None else (usage.cpu_millicores if resource == "cpu" else usage.memory_bytes)
        # Kubernetes sets pods that are not Ready apart for CPU only (start-up bursts).
        ready = is_true(pod.status.conditions) if resource == "cpu" else True
        if target.type == "Utilization":
            assert target.average_utilization is not None
            request = _request(pod, resource, parse)
            share = request * target.average_utilization / 100
            fallback = request * max(100, target.average_utilization) / 100
            values.append(PodValue(value, share, ready, fallback))
        else:
            values.append(PodValue(value, parse(target.average_value), ready))
    try:
        proposal = propose(current, values)
    except NoMetrics as err:
        raise MetricFailure(
            "FailedGetResourceMetric", f"unable to get metrics for resource {resource}: {err}"
        ) from None
    current_value = MetricValueStatus(average_value=quantity(proposal.average, unit))
    name = f"{resource} resource"
    if target.type == "Utilization":
        assert target.average_utilization is not None
        current_value.average_utilization = round(proposal.ratio * target.average_utilization)
        name = f"{resource} resource utilization (percentage of request)"
    status = MetricStatus(
        type="Resource", resource=ResourceMetricStatus(name=resource, current=current_value)
    )
    return Evaluation(proposal, status, name)


def _request(pod: Pod, resource: str, parse: Callable[[str], int]) -> int:
    total = 0
    for container in pod.spec.containers:
        value = container.resources.requests.get(resource)
        if not value:
            raise MetricFailure(
                "FailedGetResourceMetric",
                f"missing request for {resource} in container {container.name} of Pod {pod.metadata.name}",
            )
        total += parse(value)
    return total


def _pods(source: PodsMetricSource, pods: list[Pod], current: int, cache: PodMetricsCache) -> Evaluation:
    name = source.metric.name
    if name != REQUESTS_PER_SECOND:
        raise MetricFailure(
            "FailedGetPodsMetric",
            f"unable to get metric {name}: no source serves it "
            f'(the service proxies measure "{REQUESTS_PER_SECOND}")',
        )
    namespace = pods[0].metadata.namespace if pods else ""
    rates = cache.request_rates(namespace)
    if rates is None:
        raise MetricFailure(
            "FailedGetPodsMetric", f"unable to get metric {name}: no service proxy has reported lately"
        )
    target = float(parse_quantity(source.target.average_value) or Fraction(0))
    # A pod that is not Ready is no endpoint: it gets no requests, which says nothing of the load.
    values = [
        PodValue(rates.get(p.metadata.name, 0.0) if is_true(p.status.conditions) else None, target)
        for p in pods
    ]
    try:
        proposal = propose(current, values)
    except NoMetrics as err:
        raise MetricFailure("FailedGetPodsMetric", f"unable to get metric {name}: {err}") from None
    status = MetricStatus(
        type="Pods",
        pods=PodsMetricStatus(
            metric=MetricIdentifier(name=name),
            current=MetricValueStatus(average_value=quantity(proposal.average)),
        ),
    )
    return Evaluation(proposal, status, f"pods metric {name}")
