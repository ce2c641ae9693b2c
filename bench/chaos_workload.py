"""The steady workload of a chaos run, and the record of what the cluster acknowledged.

Deployments are scaled up and down and rolled out, one of them crash-loops, and small objects
(Leases nobody acts on) are created and deleted. Every write is retried until it is acknowledged:
a timeout leaves its outcome unknown, so the same (idempotent) write is sent again, and an
AlreadyExists or NotFound that follows says the earlier attempt landed. What was acknowledged is
what the cluster must still hold at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bus.client import Client
from bus.errors import AlreadyExists, Conflict, NotFound, SteerError, Timeout, Unavailable
from bus.meta import LabelSelector, ObjectMeta
from bus.resources import Deployment, Lease, Namespace
from bus.resources.apps import DeploymentSpec
from bus.resources.pod import Container, PodSpec, PodTemplateSpec
from bus.resources.records import LeaseSpec

log = logging.getLogger("chaos")

NAMESPACE = "chaos"
IMAGE = "busybox:local"
TOKEN = "chaos.steersman.io/token"
CRASHER = "crasher"
# sh acts on SIGTERM between two sleeps: stops within a second, under any runtime.
SERVE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
CRASH = ["sh", "-c", "sleep 4; exit 1"]
RETRYABLE = (Unavailable, Timeout, Conflict)


async def acknowledged(write: Callable[[], Awaitable[object]], *, within: float = 120.0) -> bool:
    """Send `write` until the cluster acknowledges it; False if it never did within `within`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await write()
            return True
        except RETRYABLE as err:
            if loop.time() >= deadline:
                log.warning("never acknowledged: %s", err)
                return False
        await asyncio.sleep(0.3)  # the control plane is restarting: ask again shortly


def deployment(name: str, replicas: int, *, token: str = "0") -> Deployment:
    labels = {"app": name}
    command = CRASH if name == CRASHER else SERVE
    pod = PodSpec(
        containers=[Container(name="main", image=IMAGE, command=command)],
        termination_grace_period_seconds=3,
    )
    template = PodTemplateSpec(metadata=ObjectMeta(labels=labels, annotations={TOKEN: token}), spec=pod)
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE, labels=labels),
        spec=DeploymentSpec(
            selector=LabelSelector(match_labels=labels), template=template, replicas=replicas
        ),
    )


@dataclass
class Desired:
    replicas: int
    token: str = "0"


@dataclass
class Workload:
    client: Client
    rng: random.Random
    deployments: int = 3
    desired: dict[str, Desired] = field(default_factory=dict)
    leases: set[str] = field(default_factory=set)  # acknowledged and not deleted
    deleted: set[str] = field(default_factory=set)  # acknowledged deletes
    writes: int = 0
    unacknowledged: int = 0
    _serial: int = 0

    async def setup(self) -> None:
        namespace = Namespace(metadata=ObjectMeta(name=NAMESPACE))
        await self._ack(lambda: self._create(namespace))
        names = [f"web-{i}" for i in range(self.deployments)] + [CRASHER]
        for name in names:
            replicas = 1 if name == CRASHER else 2
            if await self._ack(lambda n=name, r=replicas: self._create(deployment(n, r))):  # type: ignore[misc]
                self.desired[name] = Desired(replicas)

    async def _create(self, obj: Namespace | Deployment | Lease) -> None:
        with contextlib.suppress(AlreadyExists):  # an earlier attempt whose reply was lost
            await self.client.create(obj)

    async def _ack(self, write: Callable[[], Awaitable[object]]) -> bool:
        self.writes += 1
        done = await acknowledged(write)
        self.unacknowledged += not done
        return done

    async def step(self) -> str:
        """One random change; what it was."""
        self._serial += 1
        action = self.rng.choice(("scale", "scale", "roll", "lease", "lease", "unlease"))
        serving = [name for name in self.desired if name != CRASHER]
        match action:
            case "scale" if serving:
                name, replicas = self.rng.choice(serving), self.rng.randint(1, 4)
                scale: dict[str, Any] = {"spec": {"replicas": replicas}}
                if await self._ack(lambda: self.client.patch(Deployment, name, scale, NAMESPACE)):
                    self.desired[name].replicas = replicas
                return f"scale {name} to {replicas}"
            case "roll" if self.desired:
                name, token = self.rng.choice(sorted(self.desired)), str(self._serial)
                roll: dict[str, Any] = {"spec": {"template": {"metadata": {"annotations": {TOKEN: token}}}}}
                if await self._ack(lambda: self.client.patch(Deployment, name, roll, NAMESPACE)):
                    self.desired[name].token = token
                return f"roll out {name} ({token})"
            case "unlease" if self.leases:
                name = self.rng.choice(sorted(self.leases))
                if await self._ack(lambda: self._delete_lease(name)):
                    self.leases.discard(name)
                    self.deleted.add(name)
                return f"delete lease {name}"
            case _:
                name = f"l-{self._serial}"
                lease = Lease(metadata=ObjectMeta(name=name, namespace=NAMESPACE), spec=LeaseSpec("chaos"))
                if await self._ack(lambda: self._create(lease)):
                    self.leases.add(name)
                return f"create lease {name}"

    async def _delete_lease(self, name: str) -> None:
        with contextlib.suppress(NotFound):  # an earlier attempt whose reply was lost
            await self.client.delete(Lease, name, NAMESPACE)

    async def lost(self) -> list[str]:
        """What was acknowledged and is not so now (empty when nothing was lost)."""
        problems: list[str] = []
        leases = {lease.metadata.name for lease in await self.client.list(Lease, NAMESPACE)}
        problems += [f"acknowledged Lease {name} is missing" for name in sorted(self.leases - leases)]
        problems += [f"deleted Lease {name} is back" for name in sorted(self.deleted & leases)]
        for name, want in sorted(self.desired.items()):
            try:
                got = await self.client.get(Deployment, name, NAMESPACE)
            except NotFound:
                problems.append(f"acknowledged Deployment {name} is missing")
                continue
            token = (got.spec.template.metadata.annotations or {}).get(TOKEN)
            if got.spec.replicas != want.replicas or token != want.token:
                problems.append(
                    f"Deployment {name}: spec has replicas {got.spec.replicas} token {token}, "
                    f"acknowledged {want.replicas} and {want.token}"
                )
        return problems


async def run_steadily(workload: Workload, stop: asyncio.Event, *, every: float = 1.0) -> list[str]:
    """Change something every `every` seconds until `stop`; the changes made."""
    done: list[str] = []
    while not stop.is_set():
        try:
            done.append(await workload.step())
        except SteerError as err:  # not retryable (a bug of ours or the cluster's): record it
            done.append(f"error: {err}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return done
