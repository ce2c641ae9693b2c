"""Kubernetes' limits, checked before anything is stored: names and tokens that end up in subjects,
integers as Kubernetes types them, NUL bytes no runtime can take, and values echoed back short."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bus.validation import decode_object
from tests.bus.test_validation import (
    Manifest,
    assert_cause,
    at,
    causes_of,
    deployment,
    event,
    hpa,
    lease,
    namespace,
    patched,
    pod,
    replica_set,
    service,
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


C = "spec.containers[0]"
TEMPLATE_C = "spec.template.spec.containers[0]"
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
INT32_PROBLEM = f"must be less than or equal to {INT32_MAX} (an int32)"
INT64_PROBLEM = f"must be less than or equal to {INT64_MAX} (an int64)"

INTEGERS = [
    at(deployment, "spec.replicas", 18446744073709551616, "18446744073709551616: " + INT32_PROBLEM),
    at(deployment, "spec.replicas", 10**30, INT32_PROBLEM),
    at(deployment, "spec.replicas", 10**400, "an integer of about 401 digits: " + INT32_PROBLEM),
    at(deployment, "spec.replicas", -(2**31) - 1, "must be greater than or equal to -2147483648 (an int32)"),
    at(replica_set, "spec.replicas", INT32_MAX + 1, INT32_PROBLEM),
    at(deployment, "spec.progressDeadlineSeconds", 2**40, INT32_PROBLEM),
    at(
        deployment,
        f"{TEMPLATE_C}.ports",
        [{"containerPort": 2**40}],
        INT32_PROBLEM,
        field=f"{TEMPLATE_C}.ports[0].containerPort",
    ),
    at(pod, f"{C}.livenessProbe.periodSeconds", 10**12, INT32_PROBLEM),
    at(pod, f"{C}.readinessProbe.timeoutSeconds", 10**12, INT32_PROBLEM),
    at(pod, f"{C}.ports[0].containerPort", 2**32 + 80, INT32_PROBLEM),
    at(pod, f"{C}.livenessProbe.httpGet.port", 2**40, INT32_PROBLEM),  # an IntOrString
    at(pod, "spec.terminationGracePeriodSeconds", 2**63, INT64_PROBLEM),
    at(pod, "spec.tolerations[1].tolerationSeconds", 2**64, INT64_PROBLEM),
    at(service, "spec.ports[0].port", 2**33, INT32_PROBLEM),
    at(hpa, "spec.maxReplicas", 2**31, INT32_PROBLEM),
    at(lease, "spec.leaseDurationSeconds", 2**31, INT32_PROBLEM),
    at(event, "count", 2**31, INT32_PROBLEM),
    at(pod, "metadata.generation", 2**64, INT64_PROBLEM),
]


@pytest.mark.parametrize(("make", "changes", "field", "fragment"), INTEGERS)
def test_integers_are_bounded_as_kubernetes_types_them(
    make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str
) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


@pytest.mark.parametrize(
    ("make", "path", "value"),
    [
        (deployment, "spec.replicas", INT32_MAX),
        (pod, "spec.terminationGracePeriodSeconds", INT64_MAX),
        (pod, f"{C}.livenessProbe.periodSeconds", INT32_MAX),
    ],
)
def test_the_largest_integer_of_each_type_is_fine(
    make: Callable[[], Manifest], path: str, value: int
) -> None:
    assert decode_object(patched(make(), {path: value}))


def test_every_out_of_range_integer_is_reported_at_once() -> None:
    manifest = patched(
        deployment(),
        {
            "spec.replicas": 2**64,
            "spec.minReadySeconds": 2**40,
            f"{TEMPLATE_C}.livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10**30},
        },
    )
    fields = {cause.field for cause in causes_of(manifest)}
    assert fields == {"spec.replicas", "spec.minReadySeconds", f"{TEMPLATE_C}.livenessProbe.periodSeconds"}


NUL = "a\x00b"
NUL_BYTES = [
    at(pod, f"{C}.command[0]", NUL, "must not contain a NUL byte"),
    at(pod, f"{C}.args", ["ok", NUL], "must not contain a NUL byte", field=f"{C}.args[1]"),
    at(pod, f"{C}.env[0].value", NUL, "must not contain a NUL byte"),
    at(pod, f"{C}.env[0].name", NUL, "a valid environment variable name"),
    at(pod, f"{C}.image", NUL, "must not contain a NUL byte"),
    at(pod, f"{C}.workingDir", "/srv\x00", "must not contain a NUL byte"),
    at(
        pod,
        "spec.containers[1].startupProbe",
        {"exec": {"command": [NUL]}},
        "NUL",
        field="spec.containers[1].startupProbe.exec.command[0]",
    ),
    at(pod, f"{C}.startupProbe.exec.command[0]", NUL, "must not contain a NUL byte"),
    at(pod, f"{C}.livenessProbe.httpGet.path", "/\x00", "must not contain a NUL byte"),
    at(
        pod,
        f"{C}.livenessProbe.httpGet.httpHeaders",
        [{"name": "X-A", "value": "1\r\nHost: elsewhere"}],
        "must not contain control characters",
        field=f"{C}.livenessProbe.httpGet.httpHeaders[0].value",
    ),
    at(
        pod,
        f"{C}.livenessProbe.httpGet.httpHeaders",
        [{"name": "X A", "value": "1"}],
        "a valid HTTP header must consist of",
        field=f"{C}.livenessProbe.httpGet.httpHeaders[0].name",
    ),
    at(deployment, f"{TEMPLATE_C}.command", ["sh", "-c", NUL], "NUL byte", field=f"{TEMPLATE_C}.command[2]"),
]


@pytest.mark.parametrize(("make", "changes", "field", "fragment"), NUL_BYTES)
def test_nul_bytes_are_refused_where_no_runtime_takes_them(
    make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str
) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


def test_nul_bytes_are_fine_in_free_text() -> None:
    assert decode_object(patched(deployment(), {"metadata.annotations.note": "binary\x00ok"}))


METADATA = [
    at(pod, "metadata.labels", {f"{'p' * 254}/app": "x"}, "prefix part must be no more than 253 characters"),
    at(
        pod,
        "metadata.labels",
        {"app": "v" * 64},
        "must be no more than 63 characters",
        field="metadata.labels[app]",
    ),
    at(pod, "metadata.annotations", {f"{'p' * 254}/note": "x"}, "prefix part must be no more than 253"),
    at(
        pod,
        "metadata.annotations",
        {f"k{i}": "x" * (64 * 1024) for i in range(4)},
        "Too long: must have at most 262144 bytes",
    ),
    at(event, "metadata.name", "e" * 254, "must be no more than 253 characters"),
    at(namespace, "metadata.name", "n" * 64, "must be no more than 63 characters"),
]


@pytest.mark.parametrize(("make", "changes", "field", "fragment"), METADATA)
def test_metadata_limits(
    make: Callable[[], Manifest], changes: dict[str, Any], field: str, fragment: str
) -> None:
    assert_cause(causes_of(patched(make(), changes)), field, fragment)


def test_longest_label_key_and_value_are_fine() -> None:
    labels = {f"{'p' * 253}/{'n' * 63}": "v" * 63}
    assert decode_object(patched(pod(), {"metadata.labels": labels}))
