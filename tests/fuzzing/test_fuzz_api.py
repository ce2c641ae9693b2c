"""Fuzzed requests to every API subject and the node-scoped ones; manifests through `steer apply`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import manifests, payloads
from tests.fuzzing.conftest import SUITE, Fuzz
from tests.fuzzing.fixtures import NAMES, RUNNING

# A failing example is printed; a megabyte of it is still the input that failed.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def test_raw_payloads_to_api_subjects(fuzz: Fuzz) -> None:
    harness = fuzz.harness

    @settings(SUITE, max_examples=250)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        target = data.draw(payloads.api_target(harness.namespace), label="target")
        body = data.draw(payloads.payload(target.verb, list(NAMES)), label="body")
        fuzz.check(harness.api(target, body))

    check()
    fuzz.healthy()


def test_raw_payloads_to_node_scoped_subjects(fuzz: Fuzz) -> None:
    harness = fuzz.harness

    @settings(SUITE, max_examples=120)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        target = data.draw(payloads.api_target(harness.namespace, node=harness.node), label="target")
        body = data.draw(payloads.payload(target.verb, [*NAMES, RUNNING]), label="body")
        fuzz.check(harness.api(target, body, name="node-api"))

    check()
    fuzz.healthy()


def test_mutated_manifests_through_apply(fuzz: Fuzz) -> None:
    harness = fuzz.harness

    @settings(SUITE, max_examples=80)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        bodies = [
            data.draw(manifests.manifest().flatmap(manifests.mutated), label="mutated")[1]
            for _ in range(data.draw(st.integers(1, 2)))
        ]
        if data.draw(st.booleans()):
            bodies.append(data.draw(manifests.manifest(), label="well-formed"))
        fuzz.check(harness.apply(data.draw(manifests.text(bodies), label="text")))

    check()
    fuzz.healthy()
