"""Kubernetes' limits, checked before anything is stored: names and tokens that end up in subjects,
integers as Kubernetes types them, NUL bytes no runtime can take, and values echoed back short."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.bus.test_validation import (
    Manifest,
    assert_cause,
    at,
    causes_of,
    event,
    patched,
    pod,
)

LONG = "a" * 5000

SUBJECT_TOKENS = [
    at(event, "involvedObject.name", LONG, "must be no more than 63 characters"),
    at(event, "involvedObject.name", "web.1", "RFC 1123 label"),
    at(event, "involvedObject.kind", "Pod PUB", "a kind must consist of letters and digits"),
    at(event, "involvedObject.kind", "K" * 64, "must be no more than 63 characters"),
    at(pod, "spec.nodeName", LONG, "must be no more than 63 characters"),
    at(pod, "spec.nodeName", "n1 x", "RFC 1123 label"),
    at(pod, "spec.nodeName", "n1.feed", "RFC 1123 label"),
]


@pytest.mark.parametrize(("make", "changes", "field", "fragment"), SUBJECT_TOKENS)
def test_values_that_become_subject_tokens(
    make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str
) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


@pytest.mark.parametrize("field", ["metadata.name", "spec.restartPolicy"])
def test_a_long_value_is_not_echoed_back_in_full(field: str) -> None:
    causes = causes_of(patched(pod(), {field: LONG}))
    assert [c.field for c in causes] == [field]
    assert len(causes[0].message) < 600 and "(5000 characters)" in causes[0].message
