"""Fuzzed logs and exec requests to a node agent's own subjects (bus/streams.py).

The agent must answer each (a stream that opens and ends, an ExecReply, or an error Status)
and live on. Known to fail until the node agent bounds `sinceSeconds`: a logs request with
`sinceSeconds: 1e12` raises OverflowError in the agent's task group and the agent exits.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings

from bus.resources import Pod
from tests.fuzzing import payloads
from tests.fuzzing.conftest import SUITE, Fuzz
from tests.fuzzing.fixtures import RUNNING
from tests.waiting import wait_for

# A failing example is printed; a megabyte of it is still the input that failed.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def running_pods(fuzz: Fuzz) -> list[tuple[str, str]]:
    harness = fuzz.harness
    fuzz.run(wait_for(harness.store, Pod, harness.namespace, RUNNING, lambda p: p.status.phase == "Running"))
    return [(harness.namespace, RUNNING), (harness.namespace, "web"), ("nowhere", "x")]


def test_exec_requests(fuzz: Fuzz) -> None:
    pods = running_pods(fuzz)

    @settings(SUITE, max_examples=60)
    @given(payloads.exec_request(pods))
    def check(body: bytes) -> None:
        fuzz.check(fuzz.harness.exec(body))

    check()
    fuzz.healthy()


def test_logs_requests(fuzz: Fuzz) -> None:
    pods = running_pods(fuzz)
    namespace = fuzz.harness.namespace

    @settings(SUITE, max_examples=60)
    @given(payloads.logs_request(pods))
    @example(payloads.encode({"namespace": namespace, "pod": RUNNING, "sinceSeconds": 1e12}))
    @example(payloads.encode({"namespace": namespace, "pod": RUNNING, "tail": -1, "follow": True}))
    def check(body: bytes) -> None:
        fuzz.check(fuzz.harness.logs(body))
        fuzz.healthy()

    check()
