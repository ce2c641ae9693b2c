"""Rules of the workload kinds, ReplicaSet and Deployment.

Beyond the pod template itself, the rules guard what the controllers depend on: a non-empty
selector that selects the template's own pods (otherwise a controller would create pods it can
never count, forever), restartPolicy Always (a replica that exits must come back), and a rollout
that can make progress (maxSurge and maxUnavailable not both zero).
"""

from __future__ import annotations

import re

# The module, not its names: bus.selectors imports bus.validation.rules, so this import may run
# while bus.selectors is still loading; its functions are only looked up at call time.
from bus import selectors
from bus.errors import StatusCause
from bus.meta import LabelSelector
from bus.resources.apps import Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec
from bus.resources.pod import IntOrString, PodTemplateSpec
from bus.validation.pod import pod_spec
from bus.validation.rules import (
    annotation_map,
    at_least,
    forbidden,
    invalid_value,
    label_map,
    label_selector,
    required,
    unsupported,
)
from bus.validation.schema import join

_PERCENT = re.compile(r"[0-9]+%")


def replica_set(rs: ReplicaSet) -> list[StatusCause]:
    return _workload_spec("spec", rs.spec, kind="replicaset")


def deployment(deploy: Deployment) -> list[StatusCause]:
    spec = deploy.spec
    causes = _workload_spec("spec", spec, kind="deployment")
    causes += at_least("spec.revisionHistoryLimit", spec.revision_history_limit, 0)
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        causes.append(
            invalid_value(
                "spec.progressDeadlineSeconds",
                spec.progress_deadline_seconds,
                "must be greater than minReadySeconds",
            )
        )
    causes += _strategy("spec.strategy", spec.strategy)
    return causes


def _workload_spec(path: str, spec: ReplicaSetSpec | DeploymentSpec, *, kind: str) -> list[StatusCause]:
    causes = at_least(join(path, "replicas"), spec.replicas, 0)
    causes += at_least(join(path, "minReadySeconds"), spec.min_ready_seconds, 0)
    causes += _selector(join(path, "selector"), spec.selector, kind=kind)
    causes += _template(join(path, "template"), spec.template, spec.selector)
    return causes


def _selector(path: str, selector: LabelSelector, *, kind: str) -> list[StatusCause]:
    if not selector.match_labels and not selector.match_expressions:
        return [required(path, f"empty selector is invalid for {kind}")]
    return label_selector(path, selector)


def _template(path: str, template: PodTemplateSpec, selector: LabelSelector) -> list[StatusCause]:
    labels_path = join(path, "metadata.labels")
    causes = label_map(labels_path, template.metadata.labels)
    causes += annotation_map(join(path, "metadata.annotations"), template.metadata.annotations)
    if not _selects(selector, template.metadata.labels):
        causes.append(
            invalid_value(
                labels_path, template.metadata.labels, "`selector` does not match template `labels`"
            )
        )
    spec_path = join(path, "spec")
    if template.spec is None:
        return [*causes, required(join(spec_path, "containers"))]
    causes += pod_spec(template.spec, spec_path)
    if template.spec.restart_policy != "Always":
        causes.append(unsupported(join(spec_path, "restartPolicy"), template.spec.restart_policy, ["Always"]))
    return causes


def _selects(selector: LabelSelector, template_labels: dict[str, str]) -> bool:
    """Whether a (non-empty, valid) selector matches the template; other selectors are reported elsewhere."""
    if not selector.match_labels and not selector.match_expressions:
        return True
    try:
        requirements = selectors.from_label_selector(selector)
    except ValueError:
        return True
    return selectors.matches(requirements, template_labels)


def _strategy(path: str, strategy: DeploymentStrategy) -> list[StatusCause]:
    rolling = strategy.rolling_update
    if rolling is None:
        return []
    rolling_path = join(path, "rollingUpdate")
    if strategy.type != "RollingUpdate":
        return [forbidden(rolling_path, f"may not be specified when strategy `type` is '{strategy.type}'")]
    surge_path, unavailable_path = join(rolling_path, "maxSurge"), join(rolling_path, "maxUnavailable")
    causes = _int_or_percent(surge_path, rolling.max_surge)
    causes += _int_or_percent(unavailable_path, rolling.max_unavailable)
    if isinstance(rolling.max_unavailable, str) and _PERCENT.fullmatch(rolling.max_unavailable):
        if int(rolling.max_unavailable[:-1]) > 100:
            causes.append(
                invalid_value(unavailable_path, rolling.max_unavailable, "must not be greater than 100%")
            )
    if _is_zero(rolling.max_surge) and _is_zero(rolling.max_unavailable):
        causes.append(
            invalid_value(unavailable_path, rolling.max_unavailable, "may not be 0 when `maxSurge` is 0")
        )
    return causes


def _int_or_percent(path: str, value: IntOrString) -> list[StatusCause]:
    if isinstance(value, int):
        return at_least(path, value, 0)
    if _PERCENT.fullmatch(value):
        return []
    detail = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', or '93%')"
    return [invalid_value(path, value, detail)]


def _is_zero(value: IntOrString) -> bool:
    return value == 0 or (
        isinstance(value, str) and _PERCENT.fullmatch(value) is not None and int(value[:-1]) == 0
    )
