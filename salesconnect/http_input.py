"""Reading a request: its JSON body (size and media type checked), query and sync headers.

Each rule fails with the error clients are promised: 413 for a body over `MAX_BODY_BYTES`
(checked on Content-Length and again while streaming, so a chunked body cannot slip past),
415 for a body that is not `application/json`, 400 naming the field and rule for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from marshmallow import Schema, ValidationError
from starlette.requests import Request

from salesconnect.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError
from salesconnect.model import ChangeOrigin
from schemas.errors import flatten_messages

# Large enough for a task whose 100,000-character details are all escaped astral characters.
MAX_BODY_BYTES: Final = 2 * 1024 * 1024
SYNC_ORIGIN_HEADER: Final = "X-Sync-Origin"
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN: Final = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")
_JSON_MEDIA_TYPE: Final = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_json_media_type(content_type: str) -> bool:
    return bool(_JSON_MEDIA_TYPE.match(content_type.split(";", 1)[0].strip().lower()))


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(
        "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES:,} bytes."
    )


async def read_json_object(request: Request, *, required: bool = True) -> dict[str, Any] | None:
    """The body as a JSON object; None when it is empty and not `required`."""
    body = await read_body(request)
    if not body.strip() and not required:
        return None
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        raise UnsupportedMediaTypeError(
            "unsupported_media_type",
            f"The body must be JSON sent as Content-Type: application/json, "
            f"not {content_type or 'no Content-Type'}.",
        )
    if not body.strip():
        raise InvalidInputError({"body": ["Must be a JSON object; the body is empty."]})
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError({"body": [f"Must be valid UTF-8 JSON: {exc}."]}) from None
    if not isinstance(value, dict):
        raise InvalidInputError({"body": ["Must be a JSON object."]})
    return value


def load(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise InvalidInputError(flatten_messages(exc.messages)) from None
    return loaded


def load_query(schema: Schema, request: Request) -> dict[str, Any]:
    """Query parameters through `schema`; parameters it does not know are ignored."""
    known = set(schema.fields)
    return load(schema, {k: v for k, v in request.query_params.items() if k in known})


def change_origin(request: Request) -> ChangeOrigin:
    """`X-Sync-Origin: salesforce` marks the bridge's writes; without it a write is the user's."""
    origin = request.headers.get(SYNC_ORIGIN_HEADER)
    if origin is None or origin.strip().lower() == ChangeOrigin.USER.value:
        return ChangeOrigin.USER
    if origin.strip().lower() == ChangeOrigin.SALESFORCE.value:
        return ChangeOrigin.SALESFORCE
    raise InvalidInputError({SYNC_ORIGIN_HEADER: ["Must be 'salesforce' (the bridge) or 'user'."]})


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise InvalidInputError(
            {
                IDEMPOTENCY_KEY_HEADER: [
                    "Must be 1-255 printable ASCII characters, not starting with a space."
                ]
            }
        )
    return key
