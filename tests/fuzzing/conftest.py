"""One control plane for the fuzz tests: nats-server, an API and a node agent (fake runtime), as
real processes, plus the harness that sends inputs and checks the invariants.

The harness runs on an event loop of its own, so hypothesis drives plain functions; each test
draws a bounded number of inputs (a fixed seed: the suite sees the same ones every run, and
`bench/fuzz.py` explores far more).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from bus.connection import connect
from bus.resources import Node
from bus.store import Store
from tests.agents import node_ready
from tests.cluster import ControlPlane
from tests.fuzzing.harness import Finding, Harness
from tests.waiting import wait_for

T = TypeVar("T")

SUITE = settings(
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Fuzz:
    loop: asyncio.AbstractEventLoop
    harness: Harness

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def check(self, coroutine: Coroutine[Any, Any, list[Finding]]) -> None:
        problems = self.run(coroutine)
        assert not problems, "\n".join(str(p) for p in problems)

    def healthy(self) -> None:
        self.check(self.harness.health())


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with ControlPlane.running(tmp_path_factory.mktemp("fuzz")) as plane:
        agent = plane.start_agent("fake")
        loop = asyncio.new_event_loop()
        nc = loop.run_until_complete(connect(plane.url, name="fuzzer"))
        try:
            store = Store(nc.jetstream())
            loop.run_until_complete(wait_for(store, Node, "", agent.name, node_ready))
            yield Fuzz(loop, loop.run_until_complete(Harness.start(plane, nc, node=agent.name)))
        finally:
            loop.run_until_complete(nc.close())
            loop.close()
