"""What a restarted agent reads back from its containers: the labels' round trip, the sorting
of a pod's containers, the stored exit, and host ports taken back before anything is allocated."""

from __future__ import annotations

import socket

import pytest

from bus.resources.pod import (
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
)
from nodeagent.adoption import recorded_exit, sort_out
from nodeagent.ports import PortAllocator, PortInUse, WantedPort
from nodeagent.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_PORTS,
    LABEL_RESTART_DELAY,
    ContainerInfo,
    ContainerSpec,
    PortBinding,
    owner,
)


def spec(**overrides: object) -> ContainerSpec:
    base: dict[str, object] = {
        "node": "n1",
        "pod_uid": "uid-1",
        "pod_namespace": "ns",
        "pod_name": "web",
        "name": "main",
        "image": "busybox",
    }
    return ContainerSpec(**{**base, **overrides})  # type: ignore[arg-type]


def test_labels_carry_ports_attempt_and_back_off() -> None:
    ports = (PortBinding(8080, 20001, "http"), PortBinding(53, 20002, "dns", "UDP"))
    read = owner(spec(ports=ports, attempt=4, restart_delay=20.0).labels())
    assert (read["attempt"], read["ports"], read["restart_delay"]) == (4, ports, 20.0)
    fresh = owner(spec().labels())
    assert (fresh["attempt"], fresh["ports"], fresh["restart_delay"]) == (0, (), None)


@pytest.mark.parametrize(
    "label, value",
    [
        (LABEL_PORTS, "not json"),
        (LABEL_PORTS, '[{"containerPort": "x"}]'),
        (LABEL_RESTART_DELAY, "soon"),
        (LABEL_RESTART_DELAY, "nan"),
        (LABEL_RESTART_DELAY, "-1"),
        (LABEL_ATTEMPT, "many"),
    ],
)
def test_labels_that_do_not_parse_read_as_absent(label: str, value: str) -> None:
    read = owner(
        {**spec(ports=(PortBinding(1, 20001),), restart_delay=10.0, attempt=2).labels(), label: value}
    )
    absent = {
        LABEL_PORTS: ("ports", ()),
        LABEL_RESTART_DELAY: ("restart_delay", None),
        LABEL_ATTEMPT: ("attempt", 0),
    }
    field, expected = absent[label]
    assert read[field] == expected  # type: ignore[literal-required]


def info(name: str, attempt: int, status: str = "exited") -> ContainerInfo:
    return ContainerInfo(
        id=f"{name}-{attempt}",
        pod_uid="uid-1",
        pod_namespace="ns",
        pod_name="web",
        name=name,
        attempt=attempt,
        status=status,  # type: ignore[arg-type]
    )


def test_the_latest_attempt_is_adopted_and_the_one_before_kept() -> None:
    found = [info("main", 0), info("main", 2, "running"), info("main", 1), info("side", 0), info("gone", 3)]
    left = sort_out(["main", "side"], found)
    assert left.adopted["main"].current.id == "main-2"
    assert left.adopted["main"].previous is not None and left.adopted["main"].previous.id == "main-1"
    assert left.adopted["side"].current.id == "side-0" and left.adopted["side"].previous is None
    assert sorted(i.id for i in left.stale) == ["gone-3", "main-0"]


def test_a_previous_attempt_still_running_is_not_kept() -> None:
    left = sort_out(["main"], [info("main", 1, "running"), info("main", 0, "running")])
    assert left.adopted["main"].previous is None
    assert [i.id for i in left.stale] == ["main-0"]


TERMINATED = ContainerStateTerminated(exit_code=1, reason="Error", container_id="docker://c1")


@pytest.mark.parametrize(
    "state, last, recorded",
    [
        (ContainerState(running=ContainerStateRunning()), ContainerState(), None),
        (ContainerState(terminated=TERMINATED), ContainerState(), TERMINATED),
        (
            ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff")),
            ContainerState(terminated=TERMINATED),
            TERMINATED,
        ),
        (
            ContainerState(waiting=ContainerStateWaiting(reason="CrashLoopBackOff")),
            ContainerState(terminated=ContainerStateTerminated(exit_code=1, container_id="docker://c0")),
            None,
        ),
    ],
)
def test_the_exit_the_previous_agent_recorded(
    state: ContainerState, last: ContainerState, recorded: ContainerStateTerminated | None
) -> None:
    stored = ContainerStatus(name="main", container_id="docker://c1", state=state, last_state=last)
    assert recorded_exit(stored) == recorded
    assert recorded_exit(None) is None


def test_ports_taken_back_are_the_pods_though_bound() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        ports = PortAllocator("127.0.0.1", port, port)
        ports.adopt("a", [PortBinding(8080, port)])
        with pytest.raises(PortInUse):  # nobody else gets it
            ports.allocate("b", [WantedPort("", 8080, host_port=port)])
        assert ports.allocate("a", [WantedPort("", 8080, before=port)]) == [PortBinding(8080, port)]
        assert ports.allocate("a", [WantedPort("", 8080, host_port=port)]) == [PortBinding(8080, port)]


def test_a_port_held_before_is_given_again_only_while_free() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        taken = other.getsockname()[1]
        ports = PortAllocator("127.0.0.1", 20000, 29999)
        free = ports.allocate("a", [WantedPort("", 80)])[0].host_port
        ports.release("a")
        assert ports.allocate("a", [WantedPort("", 80, before=free)])[0].host_port == free
        # Bound by someone else now: another port, rather than a failed pod (it was not declared).
        again = ports.allocate("b", [WantedPort("", 80, before=taken)])[0].host_port
        assert again != taken and 20000 <= again <= 29999


def test_a_container_created_but_never_started_is_not_adopted() -> None:
    """The previous agent died between create and start: nothing ran, nothing exited."""
    left = sort_out(["main"], [info("main", 0), info("main", 1, "created")])
    assert left.adopted["main"].current.id == "main-0"
    assert [i.id for i in left.stale] == ["main-1"]
