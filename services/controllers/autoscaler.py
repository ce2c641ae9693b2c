"""The HorizontalPodAutoscaler controller (autoscaling/v2): sets a Deployment's or a ReplicaSet's
replicas from the usage of its pods.

Every `sync_period` seconds (15 s, as Kubernetes) each autoscaler is reconciled: the target's
scale is read live, every metric proposes a replica count (`hpametrics`, `replicacalc`), the
highest wins, and `hpabehavior` applies stabilization, rate limits and the bounds. A change is
written as a merge patch of the target's `spec.replicas`, conditional on the resourceVersion
read (a scale made meanwhile is a Conflict and a new sync, never overwritten), and recorded as
a SuccessfulRescale event; the status says what was measured and why the count is what it is
(conditions AbleToScale, ScalingActive, ScalingLimited). Warnings (FailedGetScale, FailedGetResourceMetric,
...) are recorded when a condition changes, not at every sync.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from bus import selectors
from bus.client import Client
from bus.controller import Controller, Result
from bus.errors import Conflict, NotFound, SteerError
from bus.events import now
from bus.informer import Informer
from bus.recorder import Recorder
from bus.resources import Deployment, HorizontalPodAutoscaler, Pod, ReplicaSet
from bus.resources.autoscaling import (
    HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus,
    MetricSpec,
    MetricStatus,
    MetricTarget,
    ResourceMetricSource,
)
from bus.workqueue import Backoff
from services.controllers import hpabehavior
from services.controllers.hpametrics import Evaluation, MetricFailure, evaluate
from services.controllers.podmetrics import PodMetricsCache

log = logging.getLogger(__name__)

COMPONENT = "horizontal-pod-autoscaler"
DEFAULT_SYNC_PERIOD = 15.0
# What Kubernetes' defaulting gives an autoscaler that names no metric.
DEFAULT_METRICS = [
    MetricSpec(
        type="Resource",
        resource=ResourceMetricSource(
            name="cpu", target=MetricTarget(type="Utilization", average_utilization=80)
        ),
    )
]
Condition = tuple[str, str, str]  # status, reason, message
READY: Condition = ("True", "ReadyForNewScale", "recommended size matches current size")
STABILIZED: Condition = (
    "True",
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
)
DISABLED: Condition = (
    "False",
    "ScalingDisabled",
    "scaling is disabled since the replica count of the target is zero",
)
WITHIN_RANGE: Condition = ("False", "DesiredWithinRange", "the desired count is within the acceptable range")
TOO_MANY: Condition = (
    "True",
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
)
TOO_FEW: Condition = (
    "True",
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
)
SCALABLE: dict[str, type[Deployment] | type[ReplicaSet]] = {
    "Deployment": Deployment,
    "ReplicaSet": ReplicaSet,
}


@dataclass
class Outcome:
    """What one sync found, for the status."""

    current: int
    desired: int
    metrics: list[MetricStatus]
    conditions: dict[str, Condition]  # by type
    rescaled: bool = False


class AutoscalerReconciler:
    def __init__(
        self,
        client: Client,
        hpas: Informer[HorizontalPodAutoscaler],
        pods: Informer[Pod],
        cache: PodMetricsCache,
        *,
        sync_period: float = DEFAULT_SYNC_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.hpas = hpas
        self.pods = pods
        self.cache = cache
        self.sync_period = sync_period
        self.clock = clock
        self.recorder = Recorder(client, component=COMPONENT)
        self.history: dict[str, hpabehavior.History] = {}
        self.last_sync: dict[str, tuple[float, int]] = {}  # key -> (clock, generation synced)

    async def reconcile(self, key: str) -> Result:
        hpa = self.hpas.get(key)
        if hpa is None or hpa.metadata.deletion_timestamp is not None:
            self.history.pop(key, None)
            self.last_sync.pop(key, None)
            return Result()
        # Periodic, as Kubernetes: a change of the status (ours) does not make a sync, a change
        # of the spec (a new generation) does.
        last = self.last_sync.get(key)
        if last is not None and last[1] == hpa.metadata.generation:
            wait = last[0] + self.sync_period - self.clock()
            if wait > 0.01:
                return Result(requeue_after=wait)
        started = self.clock()
        outcome = await self._sync(key, hpa)
        await self._write_status(hpa, outcome)
        # Only a sync that went through counts: one that raised (a Conflict) is retried at once.
        self.last_sync[key] = (started, hpa.metadata.generation)
        return Result(requeue_after=self.sync_period)

    async def _sync(self, key: str, hpa: HorizontalPodAutoscaler) -> Outcome:
        ref, spec = hpa.spec.scale_target_ref, hpa.spec
        status = hpa.status
        kind = SCALABLE.get(ref.kind)
        try:
            if kind is None:
                raise NotFound(f"the kind {ref.kind} cannot be scaled (Deployment or ReplicaSet can)")
            target = await self.client.get(kind, ref.name, hpa.metadata.namespace)
        except SteerError as err:
            message = f"the HPA controller was unable to get the target's current scale: {err.message}"
            return Outcome(
                status.current_replicas,
                status.desired_replicas,
                status.current_metrics,
                {"AbleToScale": ("False", "FailedGetScale", message)},
            )
        current = target.spec.replicas
        conditions = {"AbleToScale": READY}
        if current == 0 and spec.min_replicas != 0:
            conditions["ScalingActive"] = DISABLED
            return Outcome(0, 0, [], conditions)
        evaluations, statuses, failure = self._evaluate(hpa, target, current)
        if failure is not None and (
            not evaluations or max(e.proposal.replicas for e in evaluations) < current
        ):
            # Kubernetes' rule: never scale down while some metric is unknown.
            conditions["ScalingActive"] = ("False", failure.reason, failure.message)
            return Outcome(current, current, statuses, conditions)
        best = max(evaluations, key=lambda e: e.proposal.replicas)
        message = f"the HPA was able to successfully calculate a replica count from {best.name}"
        conditions["ScalingActive"] = ("True", "ValidMetricFound", message)
        if current > spec.max_replicas:
            desired, reason = spec.max_replicas, "Current number of replicas above Spec.MaxReplicas"
            conditions["ScalingLimited"] = TOO_MANY
        elif current < spec.min_replicas:
            desired, reason = spec.min_replicas, "Current number of replicas below Spec.MinReplicas"
            conditions["ScalingLimited"] = TOO_FEW
        else:
            history = self.history.setdefault(key, hpabehavior.History())
            decision = hpabehavior.decide(spec, current, best.proposal.replicas, history, now=self.clock())
            desired = decision.replicas
            reason = f"{best.name} above target" if desired > current else "All metrics below target"
            limited = ("True", decision.limited, decision.message)
            conditions["ScalingLimited"] = limited if decision.limited else WITHIN_RANGE
            if decision.stabilized:
                conditions["AbleToScale"] = STABILIZED
        outcome = Outcome(current, desired, statuses, conditions)
        if desired != current:
            await self._rescale(key, hpa, target, desired, reason, outcome)
        return outcome

    def _evaluate(
        self, hpa: HorizontalPodAutoscaler, target: Deployment | ReplicaSet, current: int
    ) -> tuple[list[Evaluation], list[MetricStatus], MetricFailure | None]:
        """The metrics that could be computed, a status for each metric of the spec (in its
        order, empty for those that could not), and the first failure."""
        selector = selectors.from_label_selector(target.spec.selector)
        pods = [
            p
            for p in self.pods.in_namespace(hpa.metadata.namespace)
            if p.metadata.deletion_timestamp is None
            and p.status.phase not in ("Failed", "Succeeded")
            and selectors.matches(selector, p.metadata.labels)
        ]
        evaluations: list[Evaluation] = []
        statuses: list[MetricStatus] = []
        failure: MetricFailure | None = None
        for spec in hpa.spec.metrics or DEFAULT_METRICS:
            try:
                evaluations.append(evaluate(spec, pods, current, self.cache))
                statuses.append(evaluations[-1].status)
            except MetricFailure as err:
                statuses.append(MetricStatus(type=spec.type))
                failure = failure or err
        return evaluations, statuses, failure

    async def _rescale(
        self,
        key: str,
        hpa: HorizontalPodAutoscaler,
        target: Deployment | ReplicaSet,
        desired: int,
        reason: str,
        outcome: Outcome,
    ) -> None:
        # Compare-and-set on the scale that was read, as Kubernetes' scale subresource: a
        # `steer scale` (or any change) since then is a Conflict, and the sync runs again on it
        # rather than overwriting it with a count computed from the old one.
        patch = {
            "metadata": {"resourceVersion": target.metadata.resource_version},
            "spec": {"replicas": desired},
        }
        try:
            await self.client.patch(type(target), target.metadata.name, patch, target.metadata.namespace)
        except Conflict:
            raise
        except SteerError as err:
            message = f"the HPA controller was unable to update the target scale: {err.message}"
            outcome.conditions["AbleToScale"] = ("False", "FailedUpdateScale", message)
            await self.recorder.warning(
                hpa, "FailedRescale", f"New size: {desired}; reason: {reason}; error: {err.message}"
            )
            return
        hpabehavior.record_change(
            self.history.setdefault(key, hpabehavior.History()), desired - outcome.current, now=self.clock()
        )
        outcome.rescaled = True
        outcome.conditions["AbleToScale"] = (
            "True",
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
        )
        log.info(
            "%s: rescaled %s from %d to %d (%s)", key, target.metadata.name, outcome.current, desired, reason
        )
        await self.recorder.normal(hpa, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")

    async def _write_status(self, hpa: HorizontalPodAutoscaler, outcome: Outcome) -> None:
        old = hpa.status
        moment = now()
        conditions = []
        for type_ in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            previous = next((c for c in old.conditions if c.type == type_), None)
            wanted = outcome.conditions.get(type_)
            if wanted is None:
                if previous is not None:
                    conditions.append(previous)  # not evaluated this time: as it was
                continue
            state, reason, message = wanted
            same = previous is not None and previous.status == state
            conditions.append(
                HorizontalPodAutoscalerCondition(
                    type=type_,
                    status=state,  # type: ignore[arg-type]
                    reason=reason,
                    message=message,
                    last_transition_time=previous.last_transition_time if same and previous else moment,
                )
            )
            news = previous is None or previous.reason != reason or previous.message != message
            if state == "False" and reason.startswith("Failed") and news:
                await self.recorder.warning(hpa, reason, message)
        status = HorizontalPodAutoscalerStatus(
            observed_generation=hpa.metadata.generation,
            last_scale_time=moment if outcome.rescaled else old.last_scale_time,
            current_replicas=outcome.current,
            desired_replicas=outcome.desired,
            current_metrics=outcome.metrics,
            conditions=conditions,
        )
        if status != old:
            # Compare-and-set on the version synced: a Conflict runs the sync again. Deleted
            # meanwhile: no status to write.
            with contextlib.suppress(NotFound):
                await self.client.update_status(msgspec.structs.replace(hpa, status=status))


def autoscaler_controller(
    client: Client,
    hpas: Informer[HorizontalPodAutoscaler],
    pods: Informer[Pod],
    cache: PodMetricsCache,
    *,
    sync_period: float = DEFAULT_SYNC_PERIOD,
    workers: int = 1,
) -> Controller:
    """Reconciles each autoscaler every `sync_period`, and at once when its spec changes. Pods
    are read from the shared informer, not watched: their changes wait for the next sync."""
    reconciler = AutoscalerReconciler(client, hpas, pods, cache, sync_period=sync_period)
    # A failed sync (a Conflict, the API away) is retried soon, but never later than the next
    # sync would have been (Kubernetes requeues every autoscaler each period, error or not).
    controller = Controller("autoscaler", reconciler, workers=workers, backoff=Backoff(cap=sync_period))
    controller.watch(hpas)
    return controller
