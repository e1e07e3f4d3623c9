"""RabbitMQ for tests: a fresh vhost on the shared broker, and a private node for fault tests.

* `fresh_vhost()` / the `rabbit_vhost` fixture: a uniquely named vhost on the shared broker
  (created through the management API, deleted afterwards), so concurrent test runs never see
  each other's queues. Nothing outside that vhost is touched.
* `PrivateRabbitNode` / the `private_rabbit` fixture: a RabbitMQ node of the test's own, with
  its own node name, AMQP, distribution and management ports, data and log directories,
  Erlang cookie and enabled-plugins file, so a test may stop, kill and restart it. Starts in
  about 5 s; the fixture starts it once per session.

The shared broker is found through TASKSYNC_TEST_AMQP_URL and TASKSYNC_TEST_MANAGEMENT_URL
(defaults: guest on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import pytest
import requests

from tests.support.waiting import wait_for

SHARED_AMQP_URL: Final = os.environ.get(
    "TASKSYNC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"
)
SHARED_MANAGEMENT_URL: Final = os.environ.get(
    "TASKSYNC_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"
)
RABBITMQ_BIN: Final = Path(os.environ.get("TASKSYNC_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PLUGINS: Final = ("rabbitmq_management",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def amqp_url_for(
    base_amqp_url: str, vhost: str, *, user: str | None = None, password: str | None = None
) -> str:
    """`base_amqp_url` with its vhost (and optionally credentials) replaced."""
    parts = urlsplit(base_amqp_url)
    user = user or parts.username or "guest"
    password = password or parts.password or "guest"
    netloc = (
        f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}"
    )
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))


class Management:
    """The test side of the management API: vhosts, permissions, queues, definitions."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.auth = (parts.username or "guest", parts.password or "guest")
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}/api"
        self.url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(
            method, f"{self.base}/{path}", auth=self.auth, timeout=30, **kwargs
        )
        response.raise_for_status()
        return response

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def create_vhost(self, vhost: str, user: str | None = None) -> None:
        self.request("PUT", f"vhosts/{quote(vhost, safe='')}")
        self.request(
            "PUT",
            f"permissions/{quote(vhost, safe='')}/{quote(user or self.auth[0], safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, vhost: str) -> None:
        with contextlib.suppress(requests.HTTPError):
            self.request("DELETE", f"vhosts/{quote(vhost, safe='')}")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}")
        return result

    def definitions(self, vhost: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"definitions/{quote(vhost, safe='')}")
        return result


@dataclass
class BrokerVhost:
    """One vhost a test owns: its AMQP URL, management API and helpers to inspect queues."""

    name: str
    amqp_url: str
    management_url: str

    @property
    def management(self) -> Management:
        return Management(self.management_url)

    def url_as(self, user: str, password: str) -> str:
        return amqp_url_for(self.amqp_url, self.name, user=user, password=password)

    @contextlib.contextmanager
    def channel(self) -> Iterator[Any]:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def depth(self, queue: str) -> int:
        """Messages in `queue` (ready and unacknowledged), straight from the broker."""
        with self.channel() as channel:
            return int(channel.queue_declare(queue=queue, passive=True).method.message_count)

    def depths(self, queues: list[str]) -> dict[str, int]:
        with self.channel() as channel:
            return {
                queue: int(channel.queue_declare(queue=queue, passive=True).method.message_count)
                for queue in queues
            }

    def unacked(self, queue: str) -> int:
        return int(self.management.queue(self.name, queue).get("messages_unacknowledged") or 0)

    def drain(self, queue: str) -> list[tuple[Any, Any, bytes]]:
        """Take every message now in `queue` (acked): `(method, properties, body)` each.

        Consumes rather than polls with basic.get, which quorum queues with a single active
        consumer refuse."""
        taken: list[tuple[Any, Any, bytes]] = []
        with self.channel() as channel:
            depth = channel.queue_declare(queue=queue, passive=True).method.message_count
            if depth == 0:
                return taken
            for method, properties, body in channel.consume(
                queue, auto_ack=True, inactivity_timeout=10
            ):
                if method is None:
                    raise AssertionError(f"{queue}: {depth} messages announced, {len(taken)} came")
                taken.append((method, properties, body))
                if len(taken) == depth:
                    break
            channel.cancel()
        return taken


@contextlib.contextmanager
def fresh_vhost(
    prefix: str = "tasksync-test",
    *,
    amqp_url: str = SHARED_AMQP_URL,
    management_url: str = SHARED_MANAGEMENT_URL,
) -> Iterator[BrokerVhost]:
    """A new vhost with full permissions for the URL's user; deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    management = Management(management_url)
    management.create_vhost(name, urlsplit(amqp_url).username)
    try:
        yield BrokerVhost(name, amqp_url_for(amqp_url, name), management_url)
    finally:
        management.delete_vhost(name)


@pytest.fixture
def rabbit_vhost() -> Iterator[BrokerVhost]:
    """A fresh vhost on the shared RabbitMQ for this test."""
    with fresh_vhost() as vhost:
        yield vhost


class PrivateRabbitNode:
    """A RabbitMQ node this process owns (see the module docstring)."""

    def __init__(self, base_dir: Path, *, name: str | None = None) -> None:
        self.base_dir = base_dir
        self.node_name = f"{name or 'tasksync-test-' + uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.home = base_dir / "home"
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("home", "mnesia", "log"):
            (base_dir / sub).mkdir(parents=True, exist_ok=True)
        (base_dir / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
        (base_dir / "rabbitmq.conf").write_text(
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        (base_dir / "rabbitmq-env.conf").write_text("")

    @property
    def amqp_base_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    @property
    def management(self) -> Management:
        return Management(self.management_url)

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self, timeout: float = 90.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        output = open(self.base_dir / "log" / "console.log", "ab")  # noqa: SIM115 - held open
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self.environment(),
            cwd=self.base_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        wait_for(self._ready, timeout=timeout, interval=0.2, what=f"{self.node_name} to start")

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = (self.base_dir / "log" / "console.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.node_name} exited while starting:\n{log}")
        try:
            response = requests.get(
                f"http://127.0.0.1:{self.management_port}/api/overview",
                auth=("guest", "guest"),
                timeout=2,
            )
        except requests.RequestException:
            return False
        if response.status_code != 200:
            return False
        with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=2):
            return True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node gracefully (as `systemctl stop` would)."""
        self._signal(signal.SIGTERM)
        self._wait_exit(timeout)

    def kill(self) -> None:
        """Kill the node at once, as a crash or a power cut would."""
        self._signal(signal.SIGKILL)
        self._wait_exit(30.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _wait_exit(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the process group

        def port_closed() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.amqp_port)) != 0

        wait_for(port_closed, timeout=30, what=f"{self.node_name} to release its AMQP port")

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node_name, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextlib.contextmanager
    def fresh_vhost(self, prefix: str = "tasksync-test") -> Iterator[BrokerVhost]:
        with fresh_vhost(
            prefix, amqp_url=self.amqp_base_url, management_url=self.management_url
        ) as vhost:
            yield vhost

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def private_rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitNode]:
    """A private RabbitMQ node for fault tests, started once per session. A test that stops
    it must start it again before it ends."""
    node = PrivateRabbitNode(tmp_path_factory.mktemp("rabbit"))
    node.start()
    try:
        yield node
    finally:
        node.remove()
