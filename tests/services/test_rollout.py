"""The rollout arithmetic alone: surge and unavailability, how far ReplicaSets move, progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, ReplicaSet
from bus.resources.apps import (
    DeploymentSpec,
    DeploymentStatus,
    DeploymentStrategy,
    ReplicaSetSpec,
    ReplicaSetStatus,
    RollingUpdateDeployment,
)
from bus.resources.pod import Container, IntOrString, PodSpec, PodTemplateSpec
from services.controllers import rollout

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def template(image: str = "busybox:1") -> PodTemplateSpec:
    return PodTemplateSpec(
        metadata=ObjectMeta(labels={"app": "web"}),
        spec=PodSpec(containers=[Container(name="c", image=image)]),
    )


def deployment(
    replicas: int = 10,
    surge: IntOrString = "25%",
    unavailable: IntOrString = "25%",
    kind: str = "RollingUpdate",
) -> Deployment:
    strategy = (
        DeploymentStrategy(type="Recreate")
        if kind == "Recreate"
        else DeploymentStrategy(
            rolling_update=RollingUpdateDeployment(max_surge=surge, max_unavailable=unavailable)
        )
    )
    return Deployment(
        metadata=ObjectMeta(name="web", namespace="ns", generation=2),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(match_labels={"app": "web"}),
            template=template(),
            strategy=strategy,
            progress_deadline_seconds=30,
        ),
    )


def replicaset(name: str, replicas: int, available: int, age: int = 0) -> ReplicaSet:
    return ReplicaSet(
        metadata=ObjectMeta(name=name, creation_timestamp=T0 + timedelta(seconds=age)),
        spec=ReplicaSetSpec(
            selector=LabelSelector(match_labels={"app": "web"}), template=template(), replicas=replicas
        ),
        status=ReplicaSetStatus(replicas=replicas, ready_replicas=available, available_replicas=available),
    )


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable down
        (4, 1, 0, (1, 0)),
        (3, 0, 0, (0, 1)),  # never both zero: the rollout could not move
        (1, "0%", "0%", (0, 1)),
        (2, "100%", "100%", (2, 2)),
    ],
)
def test_surge_and_unavailable(
    replicas: int, surge: IntOrString, unavailable: IntOrString, expected: tuple[int, int]
) -> None:
    assert rollout.surge_and_unavailable(deployment(replicas, surge, unavailable)) == expected


def test_recreate_allows_everything_down() -> None:
    assert rollout.surge_and_unavailable(deployment(5, kind="Recreate")) == (0, 5)


def test_new_replicaset_grows_only_by_the_surge() -> None:
    d = deployment(10, surge=3, unavailable=0)
    old, new = replicaset("old", 10, 10), replicaset("new", 0, 0, age=1)
    assert rollout.rolled_up_target(d, new, [old, new]) == 3
    grown = replicaset("new", 3, 0, age=1)
    assert rollout.rolled_up_target(d, grown, [old, grown]) == 3  # no room until old ones go
    smaller_old = replicaset("old", 7, 7)
    assert rollout.rolled_up_target(d, grown, [smaller_old, grown]) == 6
    done = replicaset("new", 12, 12, age=1)
    assert rollout.rolled_up_target(d, done, [done]) == 10  # scaled down to the wanted count


def test_old_replicaset_shrinks_only_as_availability_allows() -> None:
    d = deployment(10, surge=3, unavailable=0)
    old = replicaset("old", 10, 10)
    assert rollout.scale_down_plan(d, replicaset("new", 3, 0, age=1), [old]) == {}  # new ones not ready yet
    assert rollout.scale_down_plan(d, replicaset("new", 3, 2, age=1), [old]) == {"old": 8}
    assert rollout.scale_down_plan(d, replicaset("new", 3, 3, age=1), [old]) == {"old": 7}


def test_unavailable_old_replicas_go_first_and_oldest_first() -> None:
    d = deployment(10, surge=0, unavailable=2)
    oldest, older = replicaset("oldest", 4, 1, age=0), replicaset("older", 6, 6, age=1)
    plan = rollout.scale_down_plan(d, replicaset("new", 0, 0, age=2), [oldest, older])
    # Removing unavailable replicas costs no availability, but at most total - minAvailable = 2 go
    # at once; availability (7) is below minAvailable (8), so no available replica goes.
    assert plan == {"oldest": 2}


def test_counts_and_completion() -> None:
    d = deployment(3)
    new, old = replicaset("new", 3, 3, age=1), replicaset("old", 0, 0)
    status = rollout.counts(d, new, [new, old])
    assert (status.replicas, status.updated_replicas, status.available_replicas) == (3, 3, 3)
    assert status.observed_generation == 2
    assert rollout.complete(d, status)
    assert not rollout.complete(d, rollout.counts(d, new, [new, replicaset("old", 1, 1)]))


def test_progress_is_more_updated_ready_or_available_or_fewer_old() -> None:
    before = DeploymentStatus(replicas=4, updated_replicas=1, ready_replicas=3, available_replicas=3)
    assert not rollout.progressed(before, before)
    assert rollout.progressed(
        before, DeploymentStatus(replicas=4, updated_replicas=2, ready_replicas=3, available_replicas=3)
    )
    assert rollout.progressed(
        before, DeploymentStatus(replicas=3, updated_replicas=1, ready_replicas=3, available_replicas=3)
    )
    assert not rollout.progressed(
        before, DeploymentStatus(replicas=4, updated_replicas=1, ready_replicas=2, available_replicas=2)
    )


def test_deadline() -> None:
    d = deployment()
    assert rollout.deadline_left(d, T0, T0 + timedelta(seconds=10)) == 20
    assert rollout.deadline_left(d, T0, T0 + timedelta(seconds=31)) < 0


def test_template_hash_is_stable_and_tells_templates_apart() -> None:
    assert rollout.template_hash(template()) == rollout.template_hash(template())
    assert rollout.template_hash(template()) != rollout.template_hash(template("busybox:2"))
    assert rollout.template_hash(template()) != rollout.template_hash(template(), collision_count=1)
    assert len(rollout.template_hash(template())) == 10


def test_same_template_ignores_the_hash_label() -> None:
    d = deployment()
    rs = replicaset("web-x", 1, 1)
    rs.spec.template.metadata.labels[rollout.HASH_LABEL] = "abc"
    assert rollout.same_template(rs, d)
    rs.spec.template.spec.containers[0].image = "other"  # type: ignore[union-attr]
    assert not rollout.same_template(rs, d)
