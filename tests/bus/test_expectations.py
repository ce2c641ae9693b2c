from datetime import UTC, datetime

from bus.expectations import Expectations
from bus.meta import ObjectMeta, Resource
from bus.resources import Pod
from bus.resources.pod import Container, PodSpec


def pod(name: str, owner: str | None = "ns/web", deleting: bool = False) -> Pod:
    meta = ObjectMeta(name=name, namespace="ns", labels={"owner": owner or ""})
    if deleting:
        meta.deletion_timestamp = datetime.now(UTC)
    return Pod(metadata=meta, spec=PodSpec(containers=[Container(name="c", image="i")]))


def owner_of(obj: Resource) -> str | None:
    return obj.metadata.labels.get("owner") or None


def test_nothing_expected_is_satisfied() -> None:
    assert Expectations().satisfied("ns/web")


def test_creations_are_satisfied_once_all_are_seen() -> None:
    expectations = Expectations()
    seen = expectations.observe(owner_of)
    expectations.expect("ns/web", creations=2)
    seen("ADDED", None, pod("a"))
    seen("ADDED", None, pod("b", owner="ns/other"))  # another owner's pod
    assert not expectations.satisfied("ns/web")
    seen("ADDED", None, pod("c"))
    assert expectations.satisfied("ns/web")


def test_deletions_are_satisfied_by_a_deletion_timestamp_or_removal() -> None:
    expectations = Expectations()
    seen = expectations.observe(owner_of)
    expectations.expect("ns/web", deletions=["ns/a", "ns/b"])
    seen("MODIFIED", pod("a"), pod("a"))  # not yet deleting
    assert not expectations.satisfied("ns/web")
    seen("MODIFIED", pod("a"), pod("a", deleting=True))
    assert not expectations.satisfied("ns/web")
    seen("DELETED", pod("b"), None)
    assert expectations.satisfied("ns/web")


def test_failed_writes_count_as_observed() -> None:
    expectations = Expectations()
    expectations.expect("ns/web", creations=1, deletions=["ns/a"])
    expectations.created("ns/web")
    expectations.deleted("ns/web", "ns/a")
    assert expectations.satisfied("ns/web")


def test_expectations_expire_and_can_be_forgotten() -> None:
    expectations = Expectations(ttl=0.0)
    expectations.expect("ns/web", creations=5)
    assert expectations.satisfied("ns/web")  # a lost event delays, never stops
    kept = Expectations()
    kept.expect("ns/web", creations=5)
    kept.forget("ns/web")
    assert kept.satisfied("ns/web")
