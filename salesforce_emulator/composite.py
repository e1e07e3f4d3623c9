"""The Composite resource (`POST /services/data/vNN.N/composite`): up to 25 subrequests run in
order in one call, counted once against the daily allowance, as a real org counts them.

Subrequests may be sObject rows, Query/QueryAll and sObject Collections; at most 5 of them may
be queries or collections. Each answers `{"body", "httpHeaders", "httpStatusCode",
"referenceId"}` as it would have answered alone. A later subrequest may use an earlier one's
result through `@{referenceId.field}` (dotted paths and `[n]` indexes) in its URL or body. With
`allOrNone` a failure rolls every subrequest back: the failed one keeps its error and the others
answer `PROCESSING_HALTED`; without it each subrequest stands on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from salesforce_emulator.errors import ApiError
from salesforce_emulator.http_server import Request, Response
from salesforce_emulator.records import all_or_none_flag, parse_json_body

MAX_SUBREQUESTS: Final = 25
MAX_QUERIES_AND_COLLECTIONS: Final = 5
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"})
_WRITE_METHODS: Final = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_REFERENCE_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_REFERENCE: Final = re.compile(r"@\{([A-Za-z][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_PATH_STEP: Final = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_DATA_URL: Final = re.compile(r"^/services/data/v(\d{2,3}\.\d)(?:/(.*))?$")
_HALTED: Final = {
    "errorCode": "PROCESSING_HALTED",
    "message": "The transaction was rolled back since another operation in the same "
    "transaction failed.",
}

# Runs one subrequest as a call of its own, (request, version, path segments) -> response; a
# subrequest that fails (status >= 400) must leave nothing written.
Call = Callable[[Request, str, list[str]], Response]


@dataclass(frozen=True)
class Subrequest:
    method: str
    url: str
    reference_id: str
    body: Any
    headers: Mapping[str, str]


class RolledBackCompositeError(Exception):
    """An allOrNone composite call with a failure: undo everything, then answer `response`."""

    def __init__(self, response: list[dict[str, Any]]) -> None:
        super().__init__("allOrNone composite rolled back")
        self.response = response


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_API_INPUT", message)


def is_write(body: bytes) -> bool:
    """Whether a composite call's body writes anything (for fault injection); a body that
    cannot be read counts as a write, and fails later with its own error."""
    try:
        document = json.loads(body)
        return any(
            str(item.get("method", "")).upper() in _WRITE_METHODS
            for item in document["compositeRequest"]
        )
    except Exception:
        return True


def parse(raw: bytes) -> tuple[bool, list[Subrequest]]:
    """The body's allOrNone flag and subrequests; every broken rule names its field."""
    document, _ = parse_json_body(raw)
    if not isinstance(document, Mapping) or not isinstance(document.get("compositeRequest"), list):
        raise invalid('The request body must be {"compositeRequest": [<subrequest>, ...]}')
    all_or_none = all_or_none_flag(document)
    items = document["compositeRequest"]
    if not items:
        raise invalid("compositeRequest: at least one subrequest is required")
    if len(items) > MAX_SUBREQUESTS:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"compositeRequest: a composite request takes at most {MAX_SUBREQUESTS} "
            f"subrequests, not {len(items)}",
        )
    subrequests: list[Subrequest] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        where = f"compositeRequest[{position}]"
        if not isinstance(item, Mapping):
            raise invalid(f"{where}: each subrequest must be an object")
        method = item.get("method")
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise invalid(f"{where}.method: must be one of {', '.join(sorted(_METHODS))}")
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith("/services/data/"):
            raise invalid(f"{where}.url: must be a /services/data/vNN.N/... resource")
        reference_id = item.get("referenceId")
        if not isinstance(reference_id, str) or not _REFERENCE_ID.match(reference_id):
            raise invalid(
                f"{where}.referenceId: required; a letter, then letters, digits and underscores"
            )
        if reference_id in seen:
            raise invalid(f"{where}.referenceId: {reference_id!r} is used twice")
        seen.add(reference_id)
        headers = item.get("httpHeaders") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(value, str) for value in headers.values()
        ):
            raise invalid(f"{where}.httpHeaders: must map header names to strings")
        subrequests.append(
            Subrequest(method.upper(), url, reference_id, item.get("body"), dict(headers))
        )
    heavy = sum(1 for subrequest in subrequests if _is_query_or_collection(subrequest.url))
    if heavy > MAX_QUERIES_AND_COLLECTIONS:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"compositeRequest: at most {MAX_QUERIES_AND_COLLECTIONS} subrequests may be queries "
            f"or sObject Collections, not {heavy}",
        )
    return all_or_none, subrequests


def _is_query_or_collection(url: str) -> bool:
    match = _DATA_URL.match(urlsplit(url).path)
    segments = [part for part in ((match.group(2) or "") if match else "").split("/") if part]
    return bool(segments) and (
        segments[0] in ("query", "queryAll")
        or (segments[0] == "composite" and segments[1:2] == ["sobjects"])
    )


def run(
    outer: Request, all_or_none: bool, subrequests: list[Subrequest], call: Call
) -> list[dict[str, Any]]:
    """Each subrequest in order; the `compositeResponse` list. With `all_or_none` and a
    failure, raises `RolledBackCompositeError` so the caller undoes the whole call."""
    results: dict[str, Any] = {}
    answers: list[dict[str, Any]] = []
    failed = False
    for subrequest in subrequests:
        try:
            request, version, segments = _request(outer, subrequest, results)
        except ApiError as error:
            failed = True
            answers.append(_answer(subrequest, error.status, error.body(), {}))
            continue
        response = call(request, version, segments)
        content = json.loads(response.body) if response.body else None
        if response.status >= 400:
            failed = True
        else:
            results[subrequest.reference_id] = content
        headers = {k: v for k, v in response.headers.items() if k in ("Location", "Last-Modified")}
        answers.append(_answer(subrequest, response.status, content, headers))
    if failed and all_or_none:
        raise RolledBackCompositeError(
            [
                answer
                if answer["httpStatusCode"] >= 400
                else {**answer, "body": [dict(_HALTED)], "httpStatusCode": 400, "httpHeaders": {}}
                for answer in answers
            ]
        )
    return answers


def _request(
    outer: Request, subrequest: Subrequest, results: Mapping[str, Any]
) -> tuple[Request, str, list[str]]:
    """The subrequest as a request of its own, earlier results put in for its references."""
    url = _resolve_text(subrequest.url, results)
    body = _resolve(subrequest.body, results)
    parts = urlsplit(url)
    match = _DATA_URL.match(parts.path)
    segments = [unquote(p) for p in ((match.group(2) or "") if match else "").split("/") if p]
    if match is None or (segments[:1] == ["composite"] and segments[1:2] != ["sobjects"]):
        raise invalid(f"{url}: not a resource a composite subrequest can call")
    request = Request(
        method=subrequest.method,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=_headers(outer.headers, subrequest.headers),
        body=b"" if body is None else json.dumps(body).encode("utf-8"),
        client_host=outer.client_host,
    )
    return request, match.group(1), segments


def _answer(
    subrequest: Subrequest, status: int, body: Any, headers: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "body": body,
        "httpHeaders": dict(headers),
        "httpStatusCode": status,
        "referenceId": subrequest.reference_id,
    }


def _headers(outer: Message, own: Mapping[str, str]) -> Message:
    """The outer call's headers (its session and call options) with the subrequest's own."""
    headers = Message()
    for name in ("Authorization", "Sforce-Call-Options", "Sforce-Query-Options"):
        value = outer.get(name)
        if value is not None:
            headers[name] = value
    for name, value in own.items():
        del headers[name]
        headers[name] = value
    return headers


def _resolve(value: Any, results: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _resolve_text(value, results)
    if isinstance(value, list):
        return [_resolve(item, results) for item in value]
    if isinstance(value, Mapping):
        return {key: _resolve(item, results) for key, item in value.items()}
    return value


def _resolve_text(text: str, results: Mapping[str, Any]) -> str:
    def value_of(match: re.Match[str]) -> str:
        reference, path = match.group(1), match.group(2)
        if reference not in results:
            raise ApiError(
                400,
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {reference} found in the results "
                "of earlier subrequests.",
            )
        value: Any = results[reference]
        for step in _PATH_STEP.finditer(path):
            key, index = step.group(1), step.group(2)
            try:
                value = value[int(index)] if index is not None else value[key]
            except (KeyError, IndexError, TypeError):
                raise ApiError(
                    400,
                    "PROCESSING_HALTED",
                    f"Invalid reference specified. No value for {reference}{path} found.",
                ) from None
        return value if isinstance(value, str) else json.dumps(value)

    return _REFERENCE.sub(value_of, text)
