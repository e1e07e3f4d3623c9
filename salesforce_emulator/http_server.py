"""The HTTPS server: one thread per connection, HTTP/1.1 keep-alive, and direct socket control.

A stdlib threading server is used rather than an ASGI stack because one fault must be real at
the socket: "drop the connection mid-request" closes the TCP connection with a reset and no HTTP
response at all, so the client's `requests` raises `ConnectionError` exactly as it would when a
load balancer drops it. The TLS handshake runs in the connection's own thread, so a slow client
never holds up accepting others.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 50 * 1024 * 1024
IDLE_TIMEOUT_SECONDS: Final = 120
HANDSHAKE_TIMEOUT_SECONDS: Final = 10


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Message
    body: bytes
    client_host: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False


App = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_SECONDS
    server: EmulatorHttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(length))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._send(
                Response(400, b'[{"message":"Bad chunked encoding","errorCode":"BAD_REQUEST"}]')
            )
            return
        if body is None:
            self.close_connection = True
            self._send(
                Response(
                    413,
                    b'[{"message":"Request body exceeds the limit",'
                    b'"errorCode":"REQUEST_TOO_LARGE"}]',
                )
            )
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client_host=str(self.client_address[0]),
        )
        try:
            response = self.server.app(request)
        except Exception:
            log.exception("unexpected error answering %s %s", self.command, self.path)
            response = Response(
                500,
                b'[{"message":"An unexpected error occurred in the emulator; see its log.",'
                b'"errorCode":"UNKNOWN_EXCEPTION"}]',
            )
        if response.drop_connection:
            self._drop()
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {response.status} {reason}", f"Date: {self.date_time_string()}"]
        if response.status != 204:
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(response.body)}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = head if self.command == "HEAD" or response.status == 204 else head + response.body
        self.wfile.write(payload)

    def _drop(self) -> None:
        """Close the TCP connection with a reset and no response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class EmulatorHttpServer(ThreadingHTTPServer):
    """HTTPS on a thread per connection; `app` answers each request."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, ssl_context: ssl.SSLContext) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            _Handler(connection, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="https-server", daemon=True)
        thread.start()
        return thread
