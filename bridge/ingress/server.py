"""Serving the ingress over HTTPS with uvicorn, and telling launchers where it listens.

The socket is bound before uvicorn starts, so `--port 0` works: the ready file names the port
the kernel picked, the full notification URL and, when the ingress made its own certificate,
the CA that signed it. uvicorn handles SIGTERM: it stops accepting, lets requests in progress
finish (their publishes are confirmed or answered 503), then exits.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette

from bridge.ingress.app import NOTIFICATIONS_PATH
from bridge.ingress.tls import TlsFiles

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def ready_info(host: str, port: int, tls: TlsFiles) -> dict[str, Any]:
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        url_host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"  # noqa: S104
    base_url = f"https://{url_host}:{port}"
    return {
        "url": base_url + NOTIFICATIONS_PATH,
        "base_url": base_url,
        "host": host,
        "port": port,
        "pid": os.getpid(),
        "ca_path": str(tls.ca_path) if tls.ca_path is not None else None,
    }


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[], None],
        on_stopping: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_stopping = on_stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Here rather than after run(): uvicorn re-raises SIGTERM once it has shut down.
        self._on_stopping()
        await super().shutdown(sockets)


def serve(
    app: Starlette,
    sock: socket.socket,
    tls: TlsFiles,
    *,
    on_started: Callable[[], None],
    on_stopping: Callable[[], None],
    log_level: str = "info",
) -> bool:
    """Serve until SIGTERM/SIGINT; False when the server could not start."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls.cert_path),
        ssl_keyfile=str(tls.key_path),
        timeout_graceful_shutdown=15,
    )
    server = _Server(config, on_started, on_stopping)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return bool(server.started)
