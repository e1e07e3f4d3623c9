"""Serving the application with uvicorn, and telling a launcher where it listens.

The socket is bound before uvicorn starts, so `--port 0` works: the kernel picks a free port
and the ready file (written atomically only after start-up, i.e. after the schema migration)
names the real one. Launchers wait for that file instead of guessing when the server is up.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from salesconnect.app import ServiceConfig, create_app


@dataclass(frozen=True)
class ReadyInfo:
    url: str
    host: str
    port: int
    pid: int
    database: str

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(self.__dict__))
        partial.replace(path)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every keep-alive response waits ~40 ms on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: ReadyInfo, ready_file: Path | None):
        super().__init__(config)
        self.ready_info = on_ready
        self.ready_file = ready_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        if self.ready_file is not None:
            self.ready_info.write(self.ready_file)
        print(f"salesconnect: listening on {self.ready_info.url}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Here rather than after run(): uvicorn re-raises SIGTERM once it has shut down, and
        # the process ends (status -15, the convention) before run() would return.
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        await super().shutdown(sockets)
        print("salesconnect: stopped", flush=True)


def serve(
    config: ServiceConfig,
    *,
    host: str,
    port: int,
    ready_file: Path | None = None,
    log_level: str = "info",
) -> None:
    app = create_app(config)
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    info = ReadyInfo(
        url=f"http://{url_host}:{bound_port}",
        host=host,
        port=bound_port,
        pid=os.getpid(),
        database=app.state.database.describe(),
    )
    uvicorn_config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _Server(uvicorn_config, info, ready_file)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise SystemExit(3)
