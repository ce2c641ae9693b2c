"""What a request names (looked-up names, subject namespaces and nodes, resourceVersions)."""

from __future__ import annotations

import pytest

from bus.validation import requests


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("web", ""),
        ("web-1.17a2b3c4d5e6f708", ""),  # Event names hold a dot
        ("Bad_Name", ""),  # no object can have it, so it is simply not found
        ("x" * 253, ""),
        ("", "Required value"),
        ("x" * 254, "must be no more than 253 characters"),
        ("a" * 5000, "(5000 characters)"),
        ("web 1", "a name may hold only"),
        ("web\x00", "a name may hold only"),
        ("*", "a name may hold only"),
        ("a..b", "a name may hold only"),
        (".a", "a name may hold only"),
        ("é", "a name may hold only"),
    ],
)
def test_lookup_name(name: str, problem: str) -> None:
    causes = requests.lookup_name(name)
    if not problem:
        assert causes == []
    else:
        assert len(causes) == 1 and causes[0].field == "name" and problem in causes[0].message
        assert len(causes[0].message) < 500


@pytest.mark.parametrize(
    ("namespace", "ok"),
    [("default", True), ("", True), ("a" * 63, True), ("a" * 64, False), ("A", False), ("a.b", False)],
)
def test_namespace_token(namespace: str, ok: bool) -> None:
    assert (requests.namespace_token(namespace) == []) is ok


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("", True),
        ("1", True),
        ("9223372036854775807", True),
        ("9223372036854775808", False),
        ("1" * 5000, False),
        ("-1", False),
        ("abc", False),
        ("١٢", False),  # digits, but not ASCII ones
        ("1.5", False),
    ],
)
def test_resource_version(version: str, ok: bool) -> None:
    assert (requests.resource_version(version) == []) is ok


def test_check_raises_every_cause_at_once() -> None:
    causes = requests.lookup_name("") + requests.resource_version("x")
    with pytest.raises(requests.BadRequest) as caught:
        requests.check("invalid delete request", causes)
    assert [c.field for c in caught.value.causes] == ["name", "resourceVersion"]
    requests.check("fine", [])
