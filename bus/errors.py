"""The one error hierarchy of steersman.

Every failure that crosses the bus is one of these. The API replies with a Kubernetes-shaped
`Status` object; the client turns it back into the same exception, so callers on either side of
the bus catch `NotFound` or `Conflict`, never a transport detail.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class StatusCause(msgspec.Struct, omit_defaults=True):
    """One reason an object was rejected, as in Kubernetes' `details.causes`."""

    field: str = ""
    message: str = ""
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class StatusDetails(msgspec.Struct, omit_defaults=True):
    name: str = ""
    kind: str = ""
    causes: list[StatusCause] = []


class Status(msgspec.Struct, omit_defaults=True, rename="camel", tag_field="kind", tag=True):
    """Kubernetes' `Status` kind: the body of every error reply."""

    api_version: str = "v1"
    status: str = "Failure"
    message: str = ""
    reason: str = ""
    code: int = 500
    details: StatusDetails | None = None


class SteerError(Exception):
    """Root of every steersman error."""

    reason: ClassVar[str] = "InternalError"
    code: ClassVar[int] = 500

    def __init__(self, message: str, *, causes: list[StatusCause] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.causes = list(causes or [])

    def lines(self) -> list[str]:
        """One human line per cause (or the message when there are none)."""
        if not self.causes:
            return [self.message]
        return [f"{self.message}: {cause}" if not cause.field else str(cause) for cause in self.causes]

    def to_status(self) -> Status:
        details = StatusDetails(causes=self.causes) if self.causes else None
        return Status(message=self.message, reason=self.reason, code=self.code, details=details)


class BadRequest(SteerError):
    reason = "BadRequest"
    code = 400


class Forbidden(SteerError):
    reason = "Forbidden"
    code = 403


class NotFound(SteerError):
    reason = "NotFound"
    code = 404


class MethodNotAllowed(SteerError):
    reason = "MethodNotAllowed"
    code = 405


class AlreadyExists(SteerError):
    reason = "AlreadyExists"
    code = 409


class Conflict(SteerError):
    """A compare-and-set lost: the object changed since it was read."""

    reason = "Conflict"
    code = 409


class Gone(SteerError):
    reason = "Gone"
    code = 410


class TooLarge(SteerError):
    reason = "RequestEntityTooLarge"
    code = 413


class Invalid(SteerError):
    """The object breaks one or more rules; `causes` holds every one of them."""

    reason = "Invalid"
    code = 422


class Unavailable(SteerError):
    reason = "ServiceUnavailable"
    code = 503


class Timeout(SteerError):
    reason = "Timeout"
    code = 504


class Internal(SteerError):
    reason = "InternalError"
    code = 500


_BY_REASON: dict[str, type[SteerError]] = {
    cls.reason: cls
    for cls in (
        BadRequest,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        AlreadyExists,
        Conflict,
        Gone,
        TooLarge,
        Invalid,
        Unavailable,
        Timeout,
        Internal,
    )
}


def from_status(status: Status) -> SteerError:
    """The exception a `Status` reply stands for."""
    cls = _BY_REASON.get(status.reason, Internal)
    causes = status.details.causes if status.details else []
    return cls(status.message or status.reason, causes=causes)


def invalid(kind: str, name: str, causes: list[StatusCause]) -> Invalid:
    """Kubernetes' wording: `Deployment.apps "web" is invalid`."""
    label = f'{kind} "{name}"' if name else kind
    return Invalid(f"{label} is invalid", causes=causes)
