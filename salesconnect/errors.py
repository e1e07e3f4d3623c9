"""The errors the service answers with: an HTTP status, a stable code, a sentence, field rules.

Every error leaves the database as it was (it is raised inside the write transaction, which
then rolls back), and reaches clients as
`{"error": {"code": ..., "message": ..., "fields": {name: [rule, ...]}}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ServiceError(Exception):
    status = 500

    def __init__(
        self,
        code: str,
        message: str,
        *,
        fields: Mapping[str, list[str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields: dict[str, list[str]] = {k: list(v) for k, v in (fields or {}).items()}
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "fields": self.fields}
        error.update(self.extra)
        return {"error": error}


class InvalidInputError(ServiceError):
    """400: the request names a field wrongly; `fields` says which and by what rule."""

    status = 400

    def __init__(self, fields: Mapping[str, list[str]], message: str | None = None) -> None:
        described = "; ".join(f"{name}: {' '.join(rules)}" for name, rules in fields.items())
        super().__init__(
            "validation_failed", message or f"Invalid request: {described}", fields=fields
        )


class NotFoundError(ServiceError):
    status = 404


class ConflictError(ServiceError):
    status = 409


class PreconditionFailedError(ServiceError):
    status = 412


class PayloadTooLargeError(ServiceError):
    status = 413


class UnsupportedMediaTypeError(ServiceError):
    status = 415


class UnprocessableRequestError(ServiceError):
    status = 422


class UnauthorizedError(ServiceError):
    """401: no credential, or one the service does not know (unknown, revoked, malformed)."""

    status = 401


class ForbiddenError(ServiceError):
    """403: a known caller asking for what it may not do (another user's data, the bridge's
    own calls with a user's token, a page POST without its form token)."""

    status = 403


class TooManyRequestsError(ServiceError):
    status = 429
