"""Error classification with real exception instances, built exactly as simple-salesforce and
requests build them from HTTP responses."""

from __future__ import annotations

import json

import pika.exceptions
import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)
from simple_salesforce.util import exception_handler

from bridge.errors import (
    ErrorKind,
    SalesConnectApiError,
    System,
    TaskSyncError,
    classify,
    classify_salesforce_errors,
)
from bridge.mapping import MappingError
from schemas.errors import ContractError
from schemas.task_change import load_task_change


def salesforce_response(status: int, body: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = "https://example.my.salesforce.com/services/data/v59.0/sobjects/Task/"
    response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    response.headers["Content-Type"] = "application/json"
    return response


def raised_by_simple_salesforce(status: int, body: object) -> SalesforceError:
    with pytest.raises(SalesforceError) as caught:
        exception_handler(salesforce_response(status, body), "Task")
    return caught.value


def sf_errors(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, object]]:
    return [{"errorCode": code, "message": message, "fields": fields or []}]


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "STRING_TOO_LONG", ErrorKind.PERMANENT),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ErrorKind.PERMANENT),
        (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", ErrorKind.PERMANENT),
        (400, "REQUIRED_FIELD_MISSING", ErrorKind.PERMANENT),
        (400, "UNABLE_TO_LOCK_ROW", ErrorKind.TRANSIENT),
        (403, "REQUEST_LIMIT_EXCEEDED", ErrorKind.RATE_LIMITED),
        (403, "INSUFFICIENT_ACCESS_OR_READONLY", ErrorKind.PERMANENT),
        (403, "API_DISABLED_FOR_ORG", ErrorKind.BLOCKED),
        (401, "INVALID_SESSION_ID", ErrorKind.SESSION_EXPIRED),
        (404, "NOT_FOUND", ErrorKind.PERMANENT),
        (300, "MULTIPLE_CHOICES", ErrorKind.PERMANENT),
        (500, "UNKNOWN_EXCEPTION", ErrorKind.TRANSIENT),
        (503, "SERVER_UNAVAILABLE", ErrorKind.TRANSIENT),
    ],
)
def test_salesforce_errors_are_classified_by_status_and_error_code(
    status: int, code: str, kind: ErrorKind
) -> None:
    exc = raised_by_simple_salesforce(status, sf_errors(code, "Subject: data value too large"))
    failure = classify(exc)
    assert failure.kind is kind
    assert failure.code == code
    assert failure.system is System.SALESFORCE
    assert failure.status == status


def test_the_remote_error_text_and_fields_reach_the_operator() -> None:
    exc = raised_by_simple_salesforce(
        400, sf_errors("STRING_TOO_LONG", "Subject: data value too large: abc", ["Subject"])
    )
    described = classify(exc).describe()
    assert described.startswith("salesforce STRING_TOO_LONG (400): Subject: Subject: data value")


def test_a_transient_error_among_several_makes_the_write_retryable() -> None:
    errors = [
        {"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "no"},
        {"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"},
    ]
    failure = classify_salesforce_errors(errors, 400)
    assert failure.kind is ErrorKind.TRANSIENT
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in failure.message


def test_salesforce_html_error_pages_and_unknown_statuses() -> None:
    gateway = raised_by_simple_salesforce(502, "<html>Bad Gateway</html>")
    assert isinstance(gateway, SalesforceGeneralError)
    assert classify(gateway).kind is ErrorKind.TRANSIENT
    too_many = raised_by_simple_salesforce(429, [])
    assert classify(too_many).kind is ErrorKind.RATE_LIMITED
    gone = raised_by_simple_salesforce(410, sf_errors("GONE", "gone"))
    assert classify(gone).kind is ErrorKind.PERMANENT
    refused = raised_by_simple_salesforce(
        403, sf_errors("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    )
    assert isinstance(refused, SalesforceRefusedRequest)
    assert classify(refused).message == "TotalRequests Limit exceeded."


def test_failed_login_blocks_without_parking() -> None:
    failure = classify(SalesforceAuthenticationFailed("INVALID_LOGIN", "bad password"))
    assert failure.kind is ErrorKind.BLOCKED
    assert not failure.kind.parks_at_once
    assert not failure.kind.spends_attempt


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ErrorKind.TRANSIENT),
        (503, ErrorKind.TRANSIENT),
        (429, ErrorKind.RATE_LIMITED),
        (409, ErrorKind.CONFLICT),
        (412, ErrorKind.CONFLICT),
        (401, ErrorKind.BLOCKED),  # the bridge's service token is unknown or revoked
        (403, ErrorKind.BLOCKED),  # the bridge was given a user's token, not the service's
        (400, ErrorKind.PERMANENT),
        (404, ErrorKind.PERMANENT),
        (422, ErrorKind.PERMANENT),
    ],
)
def test_sales_connect_statuses(status: int, kind: ErrorKind) -> None:
    failure = classify(SalesConnectApiError(status, "nope", retry_after=3))
    assert failure.kind is kind
    assert failure.system is System.SALESCONNECT


def test_http_errors_raised_by_requests_are_classified_by_status() -> None:
    response = salesforce_response(503, {"error": "down"})
    response.headers["Retry-After"] = "7"
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    failure = classify(caught.value)
    assert failure.kind is ErrorKind.TRANSIENT
    assert failure.retry_after == 7.0


def test_network_failures_are_transient() -> None:
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get("http://127.0.0.1:9/", timeout=2)
    assert classify(refused.value).kind is ErrorKind.TRANSIENT
    assert classify(requests.ReadTimeout("read timed out")).kind is ErrorKind.TRANSIENT
    assert classify(ConnectionResetError(104, "reset")).kind is ErrorKind.TRANSIENT
    assert classify(pika.exceptions.StreamLostError("lost")).system is System.RABBITMQ


def test_contract_and_mapping_errors() -> None:
    with pytest.raises(ContractError) as caught:
        load_task_change(b"{not json")
    malformed = classify(caught.value)
    assert malformed.kind is ErrorKind.MALFORMED
    assert malformed.kind.parks_at_once
    mapping = classify(MappingError("ActivityDate", "must be a calendar date"))
    assert mapping.kind is ErrorKind.PERMANENT
    assert "ActivityDate" in mapping.message


def test_explicit_and_unknown_errors() -> None:
    explicit = TaskSyncError(ErrorKind.CONFLICT, "STALE", "re-read first")
    assert classify(explicit) == explicit.failure
    unknown = classify(KeyError("Subject"))
    assert unknown.kind is ErrorKind.TRANSIENT
    assert unknown.code == "KeyError"


def test_long_error_text_is_cut_for_headers() -> None:
    exc = raised_by_simple_salesforce(400, sf_errors("STRING_TOO_LONG", "x" * 5000))
    assert len(classify(exc).describe()) <= 1000
