"""`steer get -w` and `steer events -w` through a bus that goes away: they resume where they left off
when it comes back, and when it cannot come back (the connection closed for good) they say so and
exit non-zero, never 0 in silence."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from bus.client import Client
from bus.events import make_event
from bus.meta import ObjectMeta, ObjectReference
from bus.resources import Event, Pod
from bus.resources.pod import Container, PodSpec
from tests.cli.conftest import steer_command
from tests.faults import ERR_MAX_CONTROL_LINE, Relay


def pod(name: str, namespace: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=PodSpec(containers=[Container(name="main", image="busybox:local")]),
    )


class Watching:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def until(self, fragment: str, *, within: float = 30.0) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while line := (await self.proc.stdout.readline()).decode():
                self.lines.append(line)
                if fragment in line:
                    return line
        raise AssertionError(f"the watch ended before {fragment!r}: {self.lines}")

    async def ended(self, *, within: float = 30.0) -> tuple[int, str]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        async with asyncio.timeout(within):
            self.lines += (await self.proc.stdout.read()).decode().splitlines()
            err = (await self.proc.stderr.read()).decode()
            return await self.proc.wait(), err


@contextlib.asynccontextmanager
async def steer_watch(url: str, *args: str) -> AsyncIterator[Watching]:
    env = {**os.environ, "STEER_NATS": url, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        *steer_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        yield Watching(proc)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_get_watch_resumes_and_fails_loudly_when_it_cannot(
    nats_url: str, client: Client, ns: str
) -> None:
    await client.create(pod("before", ns))
    async with Relay(nats_url) as relay, steer_watch(relay.url, "get", "pods", "-n", ns, "-w") as watch:
        await watch.until("before")
        async with relay.cut():
            await client.create(pod("while-away", ns))
        await watch.until("while-away")
        await client.create(pod("after", ns))
        await watch.until("after")
        await relay.send(ERR_MAX_CONTROL_LINE)
        code, err = await watch.ended()
    assert code == 1
    assert "closed for good" in err and "Traceback" not in err
    assert "watch interrupted" in err and "watch resumed" in err
    assert sum("while-away" in line for line in watch.lines) == 1


async def test_events_watch_resumes_and_fails_loudly_when_it_cannot(
    nats_url: str, client: Client, ns: str
) -> None:
    def event(message: str) -> Event:
        involved = ObjectReference(kind="Pod", namespace=ns, name="p", api_version="v1")
        return make_event(involved, reason="Tested", message=message, component="test")

    await client.create(event("before"))
    async with Relay(nats_url) as relay, steer_watch(relay.url, "events", "-n", ns, "-w") as watch:
        await watch.until("before")
        async with relay.cut():
            await client.create(event("while-away"))
        await watch.until("while-away")
        await relay.send(ERR_MAX_CONTROL_LINE)
        code, err = await watch.ended()
    assert code == 1
    assert "closed for good" in err and "Traceback" not in err
