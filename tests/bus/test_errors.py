"""Errors cross the bus as Kubernetes `Status` objects and come back as the same exception."""

from __future__ import annotations

import msgspec
import pytest

from bus.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Internal,
    Invalid,
    MethodNotAllowed,
    NotFound,
    Status,
    StatusCause,
    StatusDetails,
    SteerError,
    Timeout,
    TooLarge,
    Unavailable,
    from_status,
    invalid,
)

CLASSES: list[tuple[type[SteerError], str, int]] = [
    (BadRequest, "BadRequest", 400),
    (Forbidden, "Forbidden", 403),
    (NotFound, "NotFound", 404),
    (MethodNotAllowed, "MethodNotAllowed", 405),
    (AlreadyExists, "AlreadyExists", 409),
    (Conflict, "Conflict", 409),
    (Gone, "Gone", 410),
    (TooLarge, "RequestEntityTooLarge", 413),
    (Invalid, "Invalid", 422),
    (Unavailable, "ServiceUnavailable", 503),
    (Timeout, "Timeout", 504),
    (Internal, "InternalError", 500),
]

CAUSE_SETS: list[list[StatusCause]] = [
    [],
    [StatusCause(field="spec.replicas", message="must be greater than or equal to 0")],
    [
        StatusCause(field="metadata.name", message="Required value", reason="FieldValueRequired"),
        StatusCause(message="no field here"),
        StatusCause(field="spec.ports[0].port", message="Invalid value: 0", reason="FieldValueInvalid"),
    ],
]

_status_decoder = msgspec.json.Decoder(Status)


@pytest.mark.parametrize(("cls", "reason", "code"), CLASSES, ids=[c[1] for c in CLASSES])
@pytest.mark.parametrize("causes", CAUSE_SETS, ids=["no-causes", "one-cause", "three-causes"])
def test_round_trip_through_status_json(
    cls: type[SteerError], reason: str, code: int, causes: list[StatusCause]
) -> None:
    err = cls('pods "web" went wrong', causes=causes)
    status = err.to_status()
    assert (status.reason, status.code, status.status) == (reason, code, "Failure")
    wire = msgspec.json.encode(status)
    back = from_status(_status_decoder.decode(wire))
    assert type(back) is cls
    assert back.message == 'pods "web" went wrong'
    assert str(back) == 'pods "web" went wrong'
    assert back.causes == causes


@pytest.mark.parametrize(("cls", "reason", "code"), CLASSES, ids=[c[1] for c in CLASSES])
def test_class_attributes(cls: type[SteerError], reason: str, code: int) -> None:
    assert issubclass(cls, SteerError)
    assert (cls.reason, cls.code) == (reason, code)


def test_status_wire_shape_is_kubernetes() -> None:
    err = Invalid("bad", causes=[StatusCause(field="spec.x", message="nope")])
    assert msgspec.json.decode(msgspec.json.encode(err.to_status())) == {
        "kind": "Status",
        "message": "bad",
        "reason": "Invalid",
        "code": 422,
        "details": {"causes": [{"field": "spec.x", "message": "nope"}]},
    }


def test_no_causes_means_no_details() -> None:
    assert NotFound("gone").to_status().details is None


@pytest.mark.parametrize("reason", ["", "Teapot", "badrequest", "InternalError"])
def test_unknown_reason_is_internal(reason: str) -> None:
    back = from_status(Status(message="boom", reason=reason, code=418))
    assert type(back) is Internal
    assert back.message == "boom"


def test_root_error_comes_back_as_internal() -> None:
    back = from_status(SteerError("boom").to_status())
    assert type(back) is Internal
    assert back.message == "boom"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Status(reason="NotFound", code=404), "NotFound"),
        (Status(reason="Conflict", message="changed", code=409), "changed"),
    ],
)
def test_empty_message_falls_back_to_reason(status: Status, message: str) -> None:
    assert from_status(status).message == message


def test_causes_read_from_details() -> None:
    causes = [StatusCause(field="a", message="b")]
    status = Status(reason="Invalid", code=422, details=StatusDetails(name="x", causes=causes))
    assert from_status(status).causes == causes


@pytest.mark.parametrize(
    ("causes", "lines"),
    [
        ([], ['Pod "web" is invalid']),
        ([StatusCause(field="spec.x", message="bad")], ["spec.x: bad"]),
        ([StatusCause(message="bad")], ['Pod "web" is invalid: bad']),
        (
            [
                StatusCause(field="metadata.name", message="Required value"),
                StatusCause(message="one more thing"),
                StatusCause(field="spec.containers", message="Required value"),
            ],
            [
                "metadata.name: Required value",
                'Pod "web" is invalid: one more thing',
                "spec.containers: Required value",
            ],
        ),
    ],
)
def test_lines_one_per_cause(causes: list[StatusCause], lines: list[str]) -> None:
    assert Invalid('Pod "web" is invalid', causes=causes).lines() == lines


def test_causes_are_copied() -> None:
    causes = [StatusCause(message="a")]
    err = BadRequest("x", causes=causes)
    causes.append(StatusCause(message="b"))
    assert len(err.causes) == 1


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("Deployment.apps", "web", 'Deployment.apps "web" is invalid'),
        ("Pod", "", "Pod is invalid"),
    ],
)
def test_invalid_wording(kind: str, name: str, message: str) -> None:
    cause = StatusCause(field="spec", message="x")
    err = invalid(kind, name, [cause])
    assert type(err) is Invalid
    assert err.message == message
    assert err.causes == [cause]
