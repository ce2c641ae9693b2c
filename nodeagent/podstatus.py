"""The status a node agent reports for a pod, computed as the kubelet computes it.

Pure: the spec, the container statuses the agent keeps as it runs them (containers.py), and the
previous status go in; the new status comes out. The rules (phase, conditions) are then tested
by table, and deciding whether to write is a plain comparison (`changed`): the agent writes only
when the status differs, so nothing here may vary between two computations of the same
situation. Transition times are carried over from the previous status for that reason, and
`now` is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from bus.meta import ConditionStatus
from bus.resources.pod import ContainerStatus, HostIP, PodCondition, PodIP, PodPhase, PodSpec, PodStatus

INITIALIZED = "Initialized"
READY = "Ready"
CONTAINERS_READY = "ContainersReady"
POD_SCHEDULED = "PodScheduled"


def terminated_reason(exit_code: int, *, oom_killed: bool = False) -> str:
    """Docker's and containerd's words for how a container ended, as the kubelet reports them."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def pod_phase(spec: PodSpec, statuses: Sequence[ContainerStatus], *, terminal: bool = False) -> PodPhase:
    """Kubernetes' `getPhase` (pkg/kubelet/kubelet_pods.go), for pods without init containers.

    A container waiting for its first start keeps the pod Pending; one waiting to be restarted
    counts as stopped (not succeeded). With every container stopped, Always means Running (they
    are being restarted), all exits 0 mean Succeeded, and otherwise Never means Failed while
    OnFailure means Running. A terminal pod (its containers will not be started again, e.g. it
    is being deleted) is Succeeded or Failed from its exits whatever the restart policy.
    """
    by_name = {s.name: s for s in statuses}
    unknown = running = waiting = stopped = succeeded = 0
    for container in spec.containers:
        status = by_name.get(container.name)
        if status is None:
            unknown += 1
        elif status.state.running is not None:
            running += 1
        elif status.state.terminated is not None:
            stopped += 1
            succeeded += status.state.terminated.exit_code == 0
        elif status.state.waiting is not None:
            if status.last_state.terminated is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if spec.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if spec.restart_policy == "Never" else "Running"
    return "Pending"


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> PodCondition:
    status: ConditionStatus = "True" if ok else "False"
    return PodCondition(type=type_, status=status, reason=reason, message=message)


def pod_conditions(
    spec: PodSpec, statuses: Sequence[ContainerStatus], phase: PodPhase, *, terminating: bool
) -> list[PodCondition]:
    """Initialized, Ready, ContainersReady and (once bound) PodScheduled, without times.

    As the kubelet's `status/generate.go`: a Succeeded pod's ContainersReady and Ready are False
    with PodCompleted, a Failed pod's with PodFailed; otherwise they list the unready containers.
    Unlike the kubelet, a terminating pod is not Ready at once, so it leaves its Services before
    its containers are asked to stop.
    """
    if phase in ("Succeeded", "Failed"):
        why = "PodCompleted" if phase == "Succeeded" else "PodFailed"
        containers_ready = _condition(CONTAINERS_READY, False, why)
    else:
        unready = [s.name for s in statuses if not s.ready]
        message = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
        containers_ready = _condition(
            CONTAINERS_READY, not unready, "ContainersNotReady" if unready else "", message
        )
    if terminating and containers_ready.status == "True":
        ready = _condition(READY, False, "Terminating", "the pod is being deleted")
    else:
        ready = _condition(
            READY, containers_ready.status == "True", containers_ready.reason, containers_ready.message
        )
    initialized = _condition(INITIALIZED, True, "PodCompleted" if phase == "Succeeded" else "")
    conditions = [initialized, ready, containers_ready]
    if spec.node_name:
        conditions.append(_condition(POD_SCHEDULED, True))
    return conditions


def carry_transition_times(
    conditions: Sequence[PodCondition], previous: Sequence[PodCondition], *, now: datetime
) -> list[PodCondition]:
    """Set lastTransitionTime: the previous one while the status stays, `now` when it changes.

    Conditions of other types in `previous` (written by others) are kept as they were.
    """
    before = {c.type: c for c in previous}
    result = []
    for condition in conditions:
        old = before.get(condition.type)
        kept = old.last_transition_time if old is not None and old.status == condition.status else None
        result.append(msgspec.structs.replace(condition, last_transition_time=kept or now))
    ours = {c.type for c in conditions}
    return result + [c for c in previous if c.type not in ours]


def assemble(
    spec: PodSpec,
    statuses: list[ContainerStatus],
    *,
    previous: PodStatus,
    now: datetime,
    terminating: bool = False,
    terminal: bool = False,
    host_ip: str = "",
    pod_ip: str = "",
    reason: str = "",
    message: str = "",
    failed: bool = False,
) -> PodStatus:
    """The pod status around container statuses already made (by the agent as it runs them).

    A terminal phase is final (the kubelet's three-way merge in `generateAPIPodStatus`, and its
    status manager refusing a terminated container to run again), and while the phase stays,
    so do the pod's reason and message unless new ones are given. startTime, hostIP and podIP
    are kept once set. `failed` marks a pod that cannot run on this node at all (a host port in
    use): it is Failed, as the kubelet fails a pod its admission rejects.
    """
    phase: PodPhase = "Failed" if failed else pod_phase(spec, statuses, terminal=terminal)
    if previous.phase in ("Succeeded", "Failed"):
        phase = previous.phase
    if phase == previous.phase:
        reason, message = reason or previous.reason, message or previous.message
    conditions = pod_conditions(spec, statuses, phase, terminating=terminating)
    return PodStatus(
        phase=phase,
        conditions=carry_transition_times(conditions, previous.conditions, now=now),
        message=message,
        reason=reason,
        host_ip=host_ip or previous.host_ip,
        pod_ip=pod_ip or previous.pod_ip,
        pod_ips=[PodIP(ip=pod_ip)] if pod_ip else previous.pod_ips,
        host_ips=[HostIP(ip=host_ip)] if host_ip else previous.host_ips,
        start_time=previous.start_time or now,
        container_statuses=statuses,
    )


def changed(old: PodStatus, new: PodStatus) -> bool:
    """Whether `new` is worth writing: any difference at all, times included.

    `assemble` is deterministic for a given situation, so an unchanged pod computes an equal
    status and costs no write; a change anywhere (a restart count, a message) must be written.
    """
    return old != new
