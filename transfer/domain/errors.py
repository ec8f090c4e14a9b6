"""The one exception root of the domain, with a stable reason per refusal.

Each subclass corresponds to one gRPC status code (the table lives in the
server); `reason` is a stable UPPER_SNAKE identifier clients may branch on,
and `message` is for people. Optional details say which fields were invalid
or which preconditions failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field: its path (e.g. ``to_school``) and why."""

    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PreconditionViolation:
    """One failed precondition: a type (e.g. ``TRANSFER_STATE``), the subject
    (e.g. ``transfers/<id>``) and why."""

    type: str
    subject: str
    description: str


class DomainError(Exception):
    """Root of every refusal the service gives on purpose."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field_violations: tuple[FieldViolation, ...] = (),
        precondition_violations: tuple[PreconditionViolation, ...] = (),
        resource: tuple[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        log_fields: dict[str, str | int] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field_violations = field_violations
        self.precondition_violations = precondition_violations
        self.resource = resource
        self.metadata = dict(metadata or {})
        # For the node's log line of the refusal only, never sent to the caller:
        # opaque values (principals, keyed digests, counts), never personal data.
        self.log_fields = dict(log_fields or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(DomainError):
    """The request itself is malformed; repeating it cannot succeed."""


class NotFound(DomainError):
    """The named resource does not exist (shown only to callers allowed to know)."""


class AlreadyExists(DomainError):
    """A resource with the same identity exists already."""


class PermissionDenied(DomainError):
    """The caller may not do this, or may not know whether the resource exists."""


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this (e.g. an illegal transition)."""


class Unauthenticated(DomainError):
    """The caller's identity could not be established."""


class OutOfRange(DomainError):
    """A position past the end of what exists (e.g. an index beyond the log's size)."""


class DataLoss(DomainError):
    """Stored data failed an integrity check; the node refuses to vouch for it."""


class Unavailable(DomainError):
    """A transient condition; the same request may succeed later."""


class ResourceExhausted(DomainError):
    """The caller holds as much of a bounded resource (e.g. open streams) as it may; it must release some first."""


@dataclass(frozen=True, slots=True)
class Violations:
    """Collects field violations so a request reports all of them at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str, reason: str = "") -> None:
        self.items.append(FieldViolation(field_path, description, reason))

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            reason = first.reason or "INVALID_ARGUMENT"
            summary = "; ".join(f"{v.field}: {v.description}" for v in self.items)
            raise InvalidArgument(reason, summary, field_violations=tuple(self.items))
