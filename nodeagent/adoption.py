"""What a restarted agent makes of the containers a previous agent left for one pod.

An agent can be killed at any moment (SIGKILL, OOM, a crash), and it keeps its per-pod records
only in memory; the containers outlive it. The next agent rebuilds each record before it starts
anything, from two sources: the runtime's own facts about each container (the labels of
runtime/base.py: attempt, host ports, restart back-off; state and times from the engine), which
are true whenever the previous agent died; and the pod's stored status, for what only an agent's
observation knows (readiness, a startup probe passed, the last termination's details), taken only
where it describes that very container. The kubelet does the same with its container labels and
annotations.

Here the containers are sorted out: for each container of the spec, the latest attempt (adopted:
it runs on, or its exit is recorded) and the one before (kept for `logs --previous`); every
older attempt, containers the spec no longer names, and containers created but never started
(the previous agent died between the two) are to be removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bus.resources.pod import ContainerStateTerminated, ContainerStatus, PodStatus
from nodeagent.runtime import ContainerInfo, PortBinding


@dataclass(frozen=True)
class Adopted:
    """One container of the pod as the previous agent left it."""

    current: ContainerInfo
    previous: ContainerInfo | None = None


@dataclass(frozen=True)
class Leftovers:
    adopted: dict[str, Adopted]  # by container name
    stale: list[ContainerInfo]  # to remove

    def held_ports(self) -> list[PortBinding]:
        """The host ports the adopted containers were started with: the pod's, before anything new
        is allocated (whether they run now or are to be restarted on them)."""
        return [port for adopted in self.adopted.values() for port in adopted.current.ports]

    def ports_of(self, container: str) -> tuple[PortBinding, ...]:
        adopted = self.adopted.get(container)
        return adopted.current.ports if adopted is not None else ()


def sort_out(containers: Iterable[str], found: Iterable[ContainerInfo]) -> Leftovers:
    """`found`: the runtime's containers of one pod; `containers`: the names its spec has."""
    wanted = set(containers)
    by_name: dict[str, list[ContainerInfo]] = {}
    stale: list[ContainerInfo] = []
    for info in found:
        if info.name in wanted and info.status != "created":
            by_name.setdefault(info.name, []).append(info)
        else:
            stale.append(info)
    adopted: dict[str, Adopted] = {}
    for name, infos in by_name.items():
        infos.sort(key=lambda info: info.attempt, reverse=True)
        previous = infos[1] if len(infos) > 1 and infos[1].status == "exited" else None
        adopted[name] = Adopted(infos[0], previous)
        stale += [info for info in infos[1:] if info is not previous]
    return Leftovers(adopted, stale)


def stored_status(status: PodStatus, name: str, container_id: str) -> ContainerStatus | None:
    """The stored status of container `name`, if it describes the container `container_id`
    (runtime://id): the observations of an agent that watched that very container."""
    for stored in status.container_statuses:
        if stored.name == name and stored.container_id == container_id:
            return stored
    return None


def recorded_exit(stored: ContainerStatus | None) -> ContainerStateTerminated | None:
    """The exit of the container `stored` describes, if the previous agent recorded it (as its
    state, or as the last state of a restart it had not begun yet)."""
    if stored is None or stored.state.running is not None:
        return None
    for state in (stored.state, stored.last_state):
        if state.terminated is not None and state.terminated.container_id == stored.container_id:
            return state.terminated
    return None
