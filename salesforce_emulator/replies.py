"""Building HTTP responses in Salesforce's shapes: compact UTF-8 JSON, error lists, XML."""

from __future__ import annotations

import json
from typing import Any

from salesforce_emulator.errors import AdminError, ApiError
from salesforce_emulator.http_server import Response


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status, body, headers=dict(headers or {}))


def no_content(headers: dict[str, str] | None = None) -> Response:
    return Response(204, headers=dict(headers or {}))


def api_error_reply(error: ApiError) -> Response:
    return json_reply(error.status, error.body())


def admin_error_reply(error: AdminError) -> Response:
    return json_reply(error.status, {"error": error.message})


def xml_reply(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), content_type="text/xml;charset=UTF-8")
