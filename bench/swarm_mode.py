"""The Docker Swarm mode half of bench/vs_swarm.py: one replicated service on a one-node swarm.

Swarm has no watch on task states, so readiness ("task state running", what `docker service ls`
counts as REPLICAS n/n) is polled from the tasks API every POLL seconds; a figure may carry up to
that much extra. The service names the image by its ID: a service naming `busybox:local` makes
every task try a registry pull first (a DNS lookup off the machine, then the local image anyway);
by ID, swarm uses the local image as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiodocker

POLL = 0.1
RUN_LABEL = "steersman.bench.run"  # on every service this bench creates: what its clean-up removes
ROLLOUT_ENV = "BENCH_ROLLOUT"
SERVICE_LABEL = "com.docker.swarm.service.name"  # set by swarm on each task's container

Task = Mapping[str, Any]


def running(task: Task) -> bool:
    return bool(task["Status"]["State"] == "running")


def env_of(task: Task) -> list[str]:
    return list(task["Spec"]["ContainerSpec"].get("Env") or [])


def service_spec(
    name: str, *, image: str, command: list[str], replicas: int, parallelism: int, run: str
) -> dict[str, Any]:
    """What `docker service create --network host --restart-delay 0s --stop-grace-period 0s
    --update-parallelism P --update-delay 0s --update-order start-first` sends."""
    return {
        "Name": name,
        "Labels": {RUN_LABEL: run},
        "TaskTemplate": {
            "ContainerSpec": {"Image": image, "Command": command, "Env": [], "StopGracePeriod": 0},
            # Swarm waits 5 s before replacing a failed task by default; no deliberate delay here.
            "RestartPolicy": {"Condition": "any", "Delay": 0},
            "Networks": [{"Target": "host"}],
        },
        "Mode": {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {
            "Parallelism": parallelism,
            "Delay": 0,
            "Order": "start-first",
            "FailureAction": "pause",
        },
    }


class SwarmService:
    """One round on Swarm: a service deployed, scaled, healed and updated; each step timed."""

    name = "Swarm"

    def __init__(self, docker: aiodocker.Docker, *, service: str, image: str, command: list[str], run: str):
        self.docker = docker
        self.service = service
        self.image = image
        self.command = command
        self.run = run
        self.replicas = 0
        self.rollouts = 0

    async def tasks(self) -> list[Task]:
        """The tasks swarm wants running (replaced and updated-away ones are `shutdown`)."""
        filters = {"service": [self.service], "desired-state": ["running"]}
        return list(await self.docker.tasks.list(filters=filters))

    async def until(self, done: Callable[[list[Task]], bool], *, within: float, what: str) -> float:
        """perf_counter() at the first poll whose tasks satisfy `done`."""
        tasks: list[Task] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    tasks = await self.tasks()
                    if done(tasks):
                        return time.perf_counter()
                    await asyncio.sleep(POLL)
        except TimeoutError:
            states = Counter(t["Status"]["State"] for t in tasks)
            shown = ", ".join(f"{n} {state}" for state, n in states.most_common())
            raise TimeoutError(
                f"Swarm: {what} not done within {within:g}s; tasks wanted running: {shown or 'none'} "
                f"(want {self.replicas} running)"
            ) from None

    def all_running(self, tasks: list[Task]) -> bool:
        return len(tasks) == self.replicas and all(running(t) for t in tasks)

    async def deploy(self, replicas: int, *, parallelism: int, within: float) -> float:
        spec = service_spec(
            self.service,
            image=self.image,
            command=self.command,
            replicas=replicas,
            parallelism=parallelism,
            run=self.run,
        )
        self.replicas = replicas
        began = time.perf_counter()
        await self.docker._query_json("services/create", method="POST", data=json.dumps(spec))
        return await self.until(self.all_running, within=within, what=f"deploy {replicas}") - began

    async def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read-modify-write of the service spec, as `docker service update` does."""
        current = await self.docker.services.inspect(self.service)
        spec = current["Spec"]
        change(spec)
        await self.docker._query_json(
            f"services/{current['ID']}/update",
            method="POST",
            params={"version": str(current["Version"]["Index"])},
            data=json.dumps(spec),
        )

    async def scale(self, replicas: int, *, within: float) -> float:
        began = time.perf_counter()
        self.replicas = replicas

        def change(spec: dict[str, Any]) -> None:
            spec["Mode"]["Replicated"]["Replicas"] = replicas

        await self._update(change)
        return await self.until(self.all_running, within=within, what=f"scale to {replicas}") - began

    async def heal(self, *, within: float) -> float:
        """Kill one task's container; until swarm shows the full count running again."""
        victim = next(t for t in await self.tasks() if running(t))
        container = victim["Status"]["ContainerStatus"]["ContainerID"]

        def healed(tasks: list[Task]) -> bool:
            return sum(running(t) and t["ID"] != victim["ID"] for t in tasks) == self.replicas

        began = time.perf_counter()
        await self.docker.containers.container(container).kill()
        return await self.until(healed, within=within, what="replacing a killed task") - began

    async def roll_out(self, *, within: float) -> float:
        """Change an env var of the task template; until every task runs the new one (old ones gone)."""
        self.rollouts += 1
        value = f"{ROLLOUT_ENV}={self.rollouts}"

        def change(spec: dict[str, Any]) -> None:
            spec["TaskTemplate"]["ContainerSpec"]["Env"] = [value]

        def updated(tasks: list[Task]) -> bool:
            return self.all_running(tasks) and all(value in env_of(t) for t in tasks)

        began = time.perf_counter()
        await self._update(change)
        return await self.until(updated, within=within, what="roll-out") - began

    async def remove(self, *, within: float = 120.0) -> None:
        """Remove the service; until its containers are gone (not timed)."""
        with contextlib.suppress(aiodocker.DockerError):
            await self.docker.services.delete(self.service)
        filters = json.dumps({"label": [f"{SERVICE_LABEL}={self.service}"]})
        async with asyncio.timeout(within):
            while True:
                if not await self.docker.containers.list(all="true", filters=filters):
                    return
                await asyncio.sleep(POLL)


async def ensure_swarm(docker: aiodocker.Docker, advertise: str = "127.0.0.1") -> bool:
    """Put the engine in swarm mode (listening on loopback only) unless it is; whether we did,
    in which case the bench leaves the swarm at the end."""
    state = (await docker.system.info())["Swarm"]["LocalNodeState"]
    if state == "active":
        return False
    if state != "inactive":
        raise RuntimeError(f"the Docker engine's swarm is {state!r}; need it inactive or active")
    await docker.swarm.init(advertise_addr=advertise, listen_addr=f"{advertise}:2377")
    return True


def remove_services(run: str, *, within: float = 120.0) -> None:
    """Blocking clean-up for an interrupted run: this run's services and their containers."""
    listed = subprocess.run(
        ["docker", "service", "ls", "-q", "--filter", f"label={RUN_LABEL}={run}"],
        capture_output=True,
        text=True,
    )
    services = listed.stdout.split()
    if not services:
        return
    names = subprocess.run(
        ["docker", "service", "inspect", "--format", "{{.Spec.Name}}", *services],
        capture_output=True,
        text=True,
    ).stdout.split()
    subprocess.run(["docker", "service", "rm", *services], capture_output=True)
    deadline = time.monotonic() + within
    for name in names:
        while time.monotonic() < deadline:
            left = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={SERVICE_LABEL}={name}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if not left:
                break
            if time.monotonic() > deadline - within / 2:  # swarm is slow to remove them: do it
                subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
            time.sleep(POLL)


def leave_swarm() -> None:
    subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)


@contextlib.asynccontextmanager
async def service_round(
    docker: aiodocker.Docker, *, service: str, image: str, command: list[str], run: str
) -> AsyncIterator[SwarmService]:
    """One service for one round, removed at the end."""
    round_ = SwarmService(docker, service=service, image=image, command=command, run=run)
    try:
        yield round_
    finally:
        try:
            await round_.remove()
        except (TimeoutError, aiodocker.DockerError) as err:  # the final clean-up tries again
            print(f"warning: service {service} not cleaned up: {err!r}", file=sys.stderr)
