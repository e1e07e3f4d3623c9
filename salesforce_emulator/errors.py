"""Salesforce's error vocabulary: the HTTP status, `errorCode`, message and fields of a failure.

REST answers a list of `{"message", "errorCode", "fields"}`; sObject Collections report the same
error per record as `{"statusCode", "message", "fields"}`. Request-level errors (sessions,
missing resources, queries) carry no `fields`, record-level errors always do, as in a real org.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ApiError(Exception):
    """A failure answered with Salesforce's error body."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = None if fields is None else list(fields)

    def body(self) -> list[dict[str, Any]]:
        error: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]

    def collection_error(self) -> dict[str, Any]:
        return {
            "statusCode": self.error_code,
            "message": self.message,
            "fields": self.fields or [],
        }


def record_error(error_code: str, message: str, fields: Sequence[str] = ()) -> ApiError:
    """A record failed Salesforce's rules: 400 with the fields at fault."""
    return ApiError(400, error_code, message, fields)


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def entity_is_deleted() -> ApiError:
    return ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])


def json_parser_error(message: str) -> ApiError:
    return ApiError(400, "JSON_PARSER_ERROR", message)


def invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


class AdminError(Exception):
    """A bad request to the emulator's own admin API: names the field and the rule broken."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
