"""The Sales Connect ASGI application: routes, error answers, start-up and shut-down.

`create_app` wires the JSON API, the pages, static files and `/openapi.json` over one
database. Start-up migrates the schema before the first request is served. Errors become
`{"error": {...}}` JSON under `/api` and a readable page elsewhere; nothing unexpected leaks
as a bare traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salesconnect import credentials, idempotency
from salesconnect.api import JsonApi, json_response
from salesconnect.auth import Authenticator, ServiceTokens
from salesconnect.change_feed import ChangeNotifier
from salesconnect.database import Database
from salesconnect.errors import PayloadTooLargeError, ServiceError
from salesconnect.http_input import MAX_BODY_BYTES
from salesconnect.migrations import migrate
from salesconnect.openapi import openapi_document
from salesconnect.pages import PAGE_HEADERS, Pages

STATIC_DIR: Final = Path(__file__).with_name("static")
IDEMPOTENCY_PURGE_INTERVAL: Final = 3600.0
_log = logging.getLogger("salesconnect")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ServiceConfig:
    """`service_tokens`: the service credentials accepted (see `salesconnect.auth`), and/or
    `service_token_file`, a file of them read again whenever it changes."""

    database_url: str
    salesforce_record_url: str = ""
    service_tokens: tuple[str, ...] = ()
    service_token_file: Path | None = None


def grouped_routes(table: Sequence[tuple[str, Mapping[str, Endpoint]]]) -> list[BaseRoute]:
    """One route per path dispatching on the method, so a wrong method answers 405 with an
    `Allow` header naming every method the path has (and HEAD works wherever GET does)."""
    routes: list[BaseRoute] = []
    for path, handlers in table:
        by_method = dict(handlers)
        if "GET" in by_method:
            by_method.setdefault("HEAD", by_method["GET"])

        async def endpoint(
            request: Request, by_method: dict[str, Endpoint] = by_method
        ) -> Response:
            return await by_method[request.method](request)

        routes.append(Route(path, endpoint, methods=list(handlers)))
    return routes


def _group(routes: list[Route]) -> list[tuple[str, dict[str, Endpoint]]]:
    table: dict[str, dict[str, Endpoint]] = {}
    for route in routes:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                table.setdefault(route.path, {})[method] = route.endpoint
    return list(table.items())


class BodySizeLimit:
    """413 for any request body over `MAX_BODY_BYTES`, before or while it streams in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                await self._refuse(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise PayloadTooLargeError(
                        "payload_too_large",
                        f"The request body is larger than {MAX_BODY_BYTES:,} bytes.",
                    )
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLargeError(
            "payload_too_large", f"The request body is larger than {MAX_BODY_BYTES:,} bytes."
        )
        response = _error_response(Request(scope, receive), error)
        await response(scope, receive, send)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _error_response(request: Request, error: ServiceError) -> Response:
    if _is_api(request):
        return json_response(error.body(), error.status, error.headers)
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Sales Connect</title>"
        '<link rel=stylesheet href="/static/style.css"><main><h1>Sorry</h1>'
        f"<p class=error>{_escape(error.message)}</p><p><a href='/'>Home</a></p></main>"
    )
    headers = {**PAGE_HEADERS, **error.headers}
    headers.pop("WWW-Authenticate", None)
    return HTMLResponse(page, error.status, headers)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return _error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = {
        404: f"Nothing at {request.url.path}.",
        405: f"{request.method} is not allowed on {request.url.path}.",
    }.get(exc.status_code, str(exc.detail))
    error = ServiceError(code, message, headers=exc.headers)
    error.status = exc.status_code
    return _error_response(request, error)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    _log.warning("database unavailable: %s", exc)
    error = ServiceError(
        "database_unavailable",
        "The database did not answer; retry shortly.",
        headers={"Retry-After": "1"},
    )
    error.status = 503
    return _error_response(request, error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    _log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = ServiceError("internal_error", "Something went wrong on the server.")
    return _error_response(request, error)


def create_app(config: ServiceConfig) -> Starlette:
    database = Database(config.database_url)
    notifier = ChangeNotifier()
    service_tokens = ServiceTokens(config.service_tokens, file=config.service_token_file)
    api = JsonApi(database, notifier, Authenticator(database, service_tokens))
    pages = Pages(database, salesforce_record_url=config.salesforce_record_url)

    async def openapi(_request: Request) -> Response:
        return json_response(openapi_document())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        version = await run_in_threadpool(migrate, database)
        _log.info("schema at version %s on %s", version, database.describe())
        notifier.bind(asyncio.get_running_loop())
        database.change_listeners.append(notifier.notify)
        purge = asyncio.create_task(_purge_expired(database))
        try:
            yield
        finally:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
            database.dispose()

    routes: list[BaseRoute] = [
        *grouped_routes(_group(api.routes())),
        Route("/openapi.json", openapi, methods=["GET"]),
        *grouped_routes(_group(pages.routes())),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ServiceError: _service_error,
        HTTPException: _http_error,
        OperationalError: _database_unavailable,
        Exception: _unexpected,
    }
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(BodySizeLimit)
    app.state.database = database
    return app


async def _purge_expired(database: Database) -> None:
    """Idempotency keys past their 24 hours and page sessions past their end."""

    def purge() -> int:
        with database.write() as transaction:
            keys = idempotency.forget_expired(transaction.connection)
            return keys + credentials.forget_expired_sessions(transaction.connection)

    while True:
        try:
            await run_in_threadpool(purge)
        except OperationalError as exc:
            _log.warning("could not purge idempotency keys and sessions: %s", exc)
        await asyncio.sleep(IDEMPOTENCY_PURGE_INTERVAL)
