"""The ingress's HTTP surface: `POST /notifications` and `GET /healthz` (starlette).

The body is read with a size limit before anything else (one declared far over the limit is
refused before reading); a client address over its rate limit is then refused (429), its body
dropped unread by anything else. The rest is handed to `NotificationIngress`, which also
limits each org's signed batches; the blocking part (Salesforce, the ledger, RabbitMQ
confirms) runs in a worker thread so one slow batch never holds up the others.
"""

from __future__ import annotations

from typing import Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.ingress.service import Answer, NotificationIngress
from bridge.observability.events import record_ingress_answer

NOTIFICATIONS_PATH: Final = "/notifications"
DRAIN_FACTOR: Final = 8


class OneRequestPerConnection:
    """Answers with `Connection: close`. Notifications come seconds apart, so keep-alive saves
    little, and an idle TLS keep-alive connection would hold a stopping ingress until uvicorn's
    graceful-shutdown timeout (its TLS close waits for a peer that is not reading)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def _respond(answer: Answer) -> Response:
    record_ingress_answer(answer.status)
    return JSONResponse(dict(answer.body), status_code=answer.status, headers=dict(answer.headers))


def _too_large(limit: int) -> Answer:
    return Answer.error(413, "body_too_large", f"body: must be at most {limit:,} bytes")


async def _read_body(
    request: Request, limit: int, drain_limit: int, *, keep: bool
) -> tuple[bytes, int] | Answer:
    """The body (when `keep`) and its size, or the answer refusing it unread."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            return Answer.error(400, "invalid_request", "Content-Length: must be a number")
        if int(declared) > drain_limit:
            return _too_large(limit)
    # A body over the limit (or refused) is read to its end (up to `drain_limit`) and dropped,
    # so the sender, still writing, reads a clean answer instead of a reset connection.
    body = bytearray()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit and keep:
            body.extend(chunk)
        elif size > drain_limit:
            break
    return bytes(body), size


def create_app(ingress: NotificationIngress) -> Starlette:
    limit = ingress.settings.max_body_bytes
    drain_limit = DRAIN_FACTOR * limit

    async def notifications(request: Request) -> Response:
        limited = ingress.limit_address(request.client.host if request.client else None)
        read = await _read_body(request, limit, drain_limit, keep=limited is None)
        if isinstance(read, Answer):
            return _respond(read)
        body, size = read
        refused = limited or (_too_large(limit) if size > limit else None)
        if refused is not None:
            return _respond(refused)
        client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
        headers = dict(request.headers)
        checked = ingress.check(headers, body, client)
        if isinstance(checked, Answer):
            return _respond(checked)
        limited = ingress.limit_org(checked.org_id, client)
        if limited is not None:
            return _respond(limited)
        if ingress.is_repeat(headers):
            return _respond(Answer(200, {"received": len(checked.notifications), "repeat": True}))
        return _respond(await run_in_threadpool(ingress.handle, checked, headers))

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        middleware=[Middleware(OneRequestPerConnection)],
        routes=[
            Route(NOTIFICATIONS_PATH, notifications, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
    )
