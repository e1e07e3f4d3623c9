"""The bridge's error vocabulary: every failure an apply can meet, classified by what to do next.

Workers never decide retry-or-park from exception types scattered through handlers. They call
`classify(exc)` and act on the `ErrorKind`:

* `TRANSIENT` (network, 5xx, `UNABLE_TO_LOCK_ROW`, a dropped connection): retry in the call with
  a short jittered backoff, then move the message through the retry tiers; park when the
  attempts run out. Unknown exceptions are classified transient too: a bug gets the retry tiers'
  time to be fixed before the message is parked.
* `RATE_LIMITED` (`REQUEST_LIMIT_EXCEEDED`, HTTP 429) and `BLOCKED` (login refused, API disabled
  for the org, the Sales Connect API refusing the bridge's service token with 401 or 403): wait
  long without spending an attempt, since nothing is wrong with the message.
* `SESSION_EXPIRED` (HTTP 401 `INVALID_SESSION_ID`): re-authenticate, then retry at once.
* `CONFLICT` (HTTP 409/412 from the Sales Connect API): re-read the record, then retry.
* `PERMANENT` (validation rules, `STRING_TOO_LONG`, `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`,
  a value the mapping cannot take): park at once with the remote error text.
* `MALFORMED` (the message breaks its contract): park at once.

simple-salesforce raises one exception class per HTTP status (its `exception_handler`) with the
parsed JSON error list as `content`; the Salesforce `errorCode` in that list refines the status.
"""

from __future__ import annotations

import enum
import http.client
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pika.exceptions
import requests
import sqlalchemy.exc
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from bridge.mapping import MappingError
from schemas.errors import ContractError

ERROR_TEXT_LIMIT: Final = 1000


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate-limited"
    BLOCKED = "blocked"
    SESSION_EXPIRED = "session-expired"
    CONFLICT = "conflict"
    PERMANENT = "permanent"
    MALFORMED = "malformed"

    @property
    def parks_at_once(self) -> bool:
        return self in (ErrorKind.PERMANENT, ErrorKind.MALFORMED)

    @property
    def spends_attempt(self) -> bool:
        """Whether a retry for this kind counts toward the attempts that end in parking."""
        return self in (ErrorKind.TRANSIENT, ErrorKind.CONFLICT, ErrorKind.SESSION_EXPIRED)


class System(enum.StrEnum):
    SALESFORCE = "salesforce"
    SALESCONNECT = "salesconnect"
    RABBITMQ = "rabbitmq"
    LEDGER = "ledger"
    BRIDGE = "bridge"


@dataclass(frozen=True)
class Failure:
    """A classified error: what kind, the remote code, and the text an operator reads."""

    kind: ErrorKind
    code: str
    message: str
    system: System = System.BRIDGE
    status: int | None = None
    retry_after: float | None = None

    def describe(self) -> str:
        """One line for `x-tasksync-error`: `salesforce STRING_TOO_LONG (400): Subject: ...`."""
        status = f" ({self.status})" if self.status is not None else ""
        text = f"{self.system.value} {self.code}{status}: {self.message}"
        return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


class TaskSyncError(Exception):
    """An error whose class the raiser already knows (appliers, clients, test handlers)."""

    def __init__(
        self,
        kind: ErrorKind,
        code: str,
        message: str,
        *,
        system: System = System.BRIDGE,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.failure = Failure(kind, code, message, system, status, retry_after)
        super().__init__(self.failure.describe())


class SalesConnectApiError(Exception):
    """A non-success answer from the Sales Connect JSON API (raised by its client)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code or f"HTTP_{status}"
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"Sales Connect API {status} {self.code}: {message}")


SALESFORCE_TRANSIENT_CODES: Final = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
        "UNKNOWN_EXCEPTION",
        "CONCURRENT_REQUESTS_LIMIT_EXCEEDED",
    }
)
SALESFORCE_RATE_LIMIT_CODES: Final = frozenset({"REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
SALESFORCE_BLOCKED_CODES: Final = frozenset(
    {
        "API_DISABLED_FOR_ORG",
        "API_CURRENTLY_DISABLED",
        "INVALID_LOGIN",
        "LOGIN_MUST_USE_SECURITY_TOKEN",
    }
)
SALESFORCE_SESSION_CODES: Final = frozenset({"INVALID_SESSION_ID", "INVALID_AUTH_HEADER"})


def classify(exc: BaseException) -> Failure:  # noqa: PLR0911 - one return per rule
    """What to do about `exc`: see the module docstring for the rules."""
    if isinstance(exc, TaskSyncError):
        return exc.failure
    if isinstance(exc, ContractError):
        return Failure(ErrorKind.MALFORMED, "CONTRACT", exc.describe(), System.BRIDGE)
    if isinstance(exc, MappingError):
        return Failure(ErrorKind.PERMANENT, "MAPPING", str(exc), System.BRIDGE)
    if isinstance(exc, SalesforceError):
        return classify_salesforce_exception(exc)
    if isinstance(exc, SalesConnectApiError):
        if exc.status in (401, 403):
            # The bridge speaks to Sales Connect with its service token alone: a refusal means
            # that token is missing, revoked or not the service's, which an operator must fix;
            # every message would fail the same way, so none is parked for it.
            return Failure(
                ErrorKind.BLOCKED,
                exc.code,
                f"{exc.message} (check the bridge's Sales Connect service token: "
                "TASKSYNC_SALESCONNECT_TOKEN or its _FILE)",
                System.SALESCONNECT,
                exc.status,
                exc.retry_after,
            )
        return classify_http_status(
            exc.status, exc.message, System.SALESCONNECT, code=exc.code, retry_after=exc.retry_after
        )
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        return classify_http_status(
            response.status_code,
            _short(response.text),
            System.BRIDGE,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return Failure(ErrorKind.BLOCKED, "TLS", _short(str(exc)), System.BRIDGE)
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | http.client.HTTPException
        | ConnectionError
        | TimeoutError,
    ):
        return Failure(ErrorKind.TRANSIENT, type(exc).__name__, _short(str(exc)), System.BRIDGE)
    return _classify_infrastructure(exc)


def _classify_infrastructure(exc: BaseException) -> Failure:
    if isinstance(exc, pika.exceptions.AMQPError):
        return Failure(ErrorKind.TRANSIENT, type(exc).__name__, _short(str(exc)), System.RABBITMQ)
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return Failure(ErrorKind.TRANSIENT, type(exc).__name__, _short(str(exc)), System.LEDGER)
    if isinstance(exc, OSError):
        return Failure(ErrorKind.TRANSIENT, type(exc).__name__, _short(str(exc)), System.BRIDGE)
    code = getattr(exc, "failure_code", None)
    return Failure(
        ErrorKind.TRANSIENT,
        code if isinstance(code, str) else type(exc).__name__,
        _short(str(exc)) or type(exc).__name__,
        System.BRIDGE,
    )


def classify_salesforce_exception(exc: SalesforceError) -> Failure:  # noqa: PLR0911
    """A simple-salesforce exception, refined by the `errorCode`s in its response body."""
    if isinstance(exc, SalesforceAuthenticationFailed):
        code = str(exc.code) if exc.code is not None else "AUTHENTICATION_FAILED"
        return Failure(ErrorKind.BLOCKED, code, exc.auth_message, System.SALESFORCE, exc.status)
    errors = salesforce_error_list(exc.content)
    if isinstance(exc, SalesforceExpiredSession):
        code, message = _first_error(errors, "INVALID_SESSION_ID", exc)
        return Failure(ErrorKind.SESSION_EXPIRED, code, message, System.SALESFORCE, exc.status)
    if isinstance(exc, SalesforceResourceNotFound):
        code, message = _first_error(errors, "NOT_FOUND", exc)
        return Failure(ErrorKind.PERMANENT, code, message, System.SALESFORCE, exc.status)
    if isinstance(exc, SalesforceMoreThanOneRecord):
        code, message = _first_error(errors, "MULTIPLE_CHOICES", exc)
        return Failure(ErrorKind.PERMANENT, code, message, System.SALESFORCE, exc.status)
    if isinstance(exc, SalesforceMalformedRequest | SalesforceRefusedRequest):
        return classify_salesforce_errors(errors, exc.status, fallback=_short(str(exc)))
    if isinstance(exc, SalesforceGeneralError):
        code, message = _first_error(errors, f"HTTP_{exc.status}", exc)
        by_code = _salesforce_code_kind(code)
        if by_code is not None:
            return Failure(by_code, code, message, System.SALESFORCE, exc.status)
        return classify_http_status(exc.status, message, System.SALESFORCE, code=code)
    return classify_http_status(exc.status, _short(str(exc)), System.SALESFORCE)


def classify_salesforce_errors(
    errors: Iterable[Mapping[str, Any]], status: int = 400, *, fallback: str = ""
) -> Failure:
    """Salesforce error objects (`{"errorCode", "message", "fields"}`), e.g. one record's errors
    in a composite response. The most hopeful kind wins: if any error is transient the whole
    write is retried, since Salesforce rolls back every error of one record together."""
    failures = [
        Failure(
            _salesforce_code_kind(code)
            or (ErrorKind.PERMANENT if status < 500 else ErrorKind.TRANSIENT),
            code,
            _salesforce_message(error),
            System.SALESFORCE,
            status,
        )
        for error in errors
        for code in [str(error.get("errorCode") or error.get("statusCode") or f"HTTP_{status}")]
    ]
    if not failures:
        return classify_http_status(status, fallback, System.SALESFORCE)
    order = (
        ErrorKind.SESSION_EXPIRED,
        ErrorKind.RATE_LIMITED,
        ErrorKind.BLOCKED,
        ErrorKind.TRANSIENT,
        ErrorKind.CONFLICT,
        ErrorKind.PERMANENT,
    )
    chosen = min(failures, key=lambda failure: order.index(failure.kind))
    if len(failures) > 1:
        others = "; ".join(f"{f.code}: {f.message}" for f in failures if f is not chosen)
        chosen = Failure(
            chosen.kind, chosen.code, f"{chosen.message}; {others}", chosen.system, chosen.status
        )
    return chosen


def classify_http_status(
    status: int,
    message: str,
    system: System,
    *,
    code: str | None = None,
    retry_after: float | None = None,
) -> Failure:
    """An HTTP status from a remote API: 5xx/408 transient, 429 rate limited, 401 session
    expired, 409/412 conflict, any other 4xx permanent."""
    code = code or f"HTTP_{status}"
    if status >= 500 or status == 408:
        kind = ErrorKind.TRANSIENT
    elif status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status == 401:
        kind = ErrorKind.SESSION_EXPIRED
    elif status in (409, 412):
        kind = ErrorKind.CONFLICT
    else:
        kind = ErrorKind.PERMANENT
    return Failure(kind, code, message, system, status, retry_after)


def salesforce_error_list(content: Any) -> list[Mapping[str, Any]]:
    """simple-salesforce's `content` (parsed JSON, bytes or text) as a list of error objects."""
    if isinstance(content, bytes | bytearray):
        try:
            content = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return [{"message": content.decode("utf-8", "replace")}]
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            return [{"message": content}] if content else []
    if isinstance(content, Mapping):
        nested = content.get("errors")
        if isinstance(nested, list):
            return [item for item in nested if isinstance(item, Mapping)]
        return [content]
    if isinstance(content, list):
        return [item for item in content if isinstance(item, Mapping)]
    return []


def _salesforce_code_kind(code: str) -> ErrorKind | None:
    if code in SALESFORCE_TRANSIENT_CODES:
        return ErrorKind.TRANSIENT
    if code in SALESFORCE_RATE_LIMIT_CODES:
        return ErrorKind.RATE_LIMITED
    if code in SALESFORCE_BLOCKED_CODES:
        return ErrorKind.BLOCKED
    if code in SALESFORCE_SESSION_CODES:
        return ErrorKind.SESSION_EXPIRED
    return None


def _salesforce_message(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "")
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        message = f"{', '.join(str(f) for f in fields)}: {message}"
    return _short(message)


def _first_error(
    errors: list[Mapping[str, Any]], default_code: str, exc: SalesforceError
) -> tuple[str, str]:
    if errors:
        first = errors[0]
        code = str(first.get("errorCode") or first.get("error") or default_code)
        return code, _salesforce_message(first) or _short(str(exc))
    return default_code, _short(str(exc))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"
