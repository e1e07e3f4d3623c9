"""The operations endpoint every long-running tasksync process serves on its own port:

* `GET /metrics`: Prometheus text (OpenMetrics when asked for), through prometheus-client;
* `GET /healthz`: liveness, 200 or 503 with `{"status", "checks": {name: {ok, detail}}}`;
* `GET /readyz`: readiness, the same shape.

A small threaded WSGI server (the standard library's) in daemon threads: probes and scrapes are
rare and cheap, and the process's own work never waits for them.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from bridge.observability.health import HealthChecks, HealthReport

log = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
LIVENESS_PATH: Final = "/healthz"
READINESS_PATH: Final = "/readyz"

StartResponse = Callable[..., Any]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a scrape every few seconds is not news."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class OperationsServer:
    """Serves /metrics, /healthz and /readyz until `close()`."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, checks: HealthChecks
    ) -> None:
        self.host = host
        self.checks = checks
        self._metrics = make_wsgi_app(registry)
        server_class = _IPv6Server if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="operations server",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> OperationsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, 405, {"error": "only GET and HEAD"}, method)
        if path == METRICS_PATH:
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == LIVENESS_PATH:
            return _report(start_response, self.checks.liveness(), method)
        if path == READINESS_PATH:
            return _report(start_response, self.checks.readiness(), method)
        return _answer(
            start_response,
            404,
            {"error": f"not found; try {METRICS_PATH}, {LIVENESS_PATH} or {READINESS_PATH}"},
            method,
        )


def _report(start_response: StartResponse, report: HealthReport, method: str) -> Iterable[bytes]:
    return _answer(start_response, 200 if report.ok else 503, report.as_dict(), method)


_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}


def _answer(
    start_response: StartResponse, status: int, body: dict[str, Any], method: str
) -> Iterable[bytes]:
    payload = (json.dumps(body, indent=2) + "\n").encode()
    start_response(
        f"{status} {_REASONS[status]}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [] if method == "HEAD" else [payload]
