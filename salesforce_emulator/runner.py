"""Starting and stopping a whole emulator on a data directory, and its discovery file.

After the HTTPS port is bound (any free port with `port=0`), `emulator.json` is written
atomically into the data directory with everything a client needs: the instance URL, the admin
URL, the CA path, the org id, the OAuth client and the default users' credentials, and the pid.
Tests, `tasksync up` and benchmarks read that file; nobody parses the printed text. A lock file
keeps a second emulator off the same directory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from salesforce_emulator.app import EmulatorApp
from salesforce_emulator.faults import FaultPlan, FaultSettings
from salesforce_emulator.http_server import EmulatorHttpServer
from salesforce_emulator.notifications import IngressSettings, NotificationSender
from salesforce_emulator.org import (
    DEFAULT_INTEGRATION_PASSWORD,
    DEFAULT_SALES_REP_PASSWORD,
    Org,
)
from salesforce_emulator.store import OrgStore
from salesforce_emulator.tls import ensure_certificates, server_context

log = logging.getLogger(__name__)

DISCOVERY_FILE: Final = "emulator.json"
DATABASE_FILE: Final = "org.sqlite3"
LOCK_FILE: Final = "emulator.lock"
API_VERSION: Final = "59.0"
MAINTENANCE_SECONDS: Final = 300


class DataDirBusyError(RuntimeError):
    """Another emulator process owns the data directory."""


@dataclass(frozen=True)
class EmulatorConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    client_id: str = "tasksync-emulator"
    client_secret: str = "tasksync-emulator-secret"  # noqa: S105 (documented default)
    faults: FaultSettings = field(default_factory=FaultSettings)
    ingress: IngressSettings = field(default_factory=IngressSettings)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):  # noqa: S104
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class RunningEmulator:
    """An emulator serving on its port, with its sender and maintenance threads."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        directory = config.data_dir.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        self.data_dir = directory
        self._lock_handle = _lock(directory / LOCK_FILE)
        ca_path, cert_path, key_path = ensure_certificates(directory, config.host)
        self.ca_path = ca_path
        self.store = OrgStore(directory / DATABASE_FILE)
        self.faults = FaultPlan(config.faults)
        self.notifications = NotificationSender(self.store, self.faults, config.ingress)
        self.org = Org(self.store, seed=config.faults.seed, notifications=self.notifications)
        self.notifications.org_id = self.org.org_id
        self.org.purge_recycle_bin()
        self.app = EmulatorApp(
            self.store,
            self.org,
            self.faults,
            self.notifications,
            client_id=config.client_id,
            client_secret=config.client_secret,
        )
        self.server = EmulatorHttpServer(
            (config.host, config.port), self.app, server_context(cert_path, key_path)
        )
        self.instance_url = f"https://{_url_host(config.host)}:{self.server.port}"
        self.app.set_instance_url(self.instance_url)
        self._stopped = threading.Event()
        self._maintenance = threading.Thread(target=self._maintain, name="maintenance", daemon=True)

    def start(self) -> None:
        self.notifications.start()
        self._maintenance.start()
        self.server.serve_in_thread()
        _write_atomically(self.data_dir / DISCOVERY_FILE, json.dumps(self.discovery(), indent=2))

    def discovery(self) -> dict[str, Any]:
        integration, rep = self.org.integration_user, self.org.sales_rep
        return {
            "instance_url": self.instance_url,
            "admin_url": f"{self.instance_url}/_emulator",
            "token_url": f"{self.instance_url}/services/oauth2/token",
            "ca_path": str(self.ca_path),
            "api_version": API_VERSION,
            "org_id": self.org.org_id,
            "client_id": self.config.client_id,
            "client_secret": self.config.client_secret,
            "integration_user": {
                "id": integration["Id"],
                "username": integration["Username"],
                "password": DEFAULT_INTEGRATION_PASSWORD,
            },
            "sales_rep": {
                "id": rep["Id"],
                "username": rep["Username"],
                "password": DEFAULT_SALES_REP_PASSWORD,
            },
            "host": self.config.host,
            "port": self.server.port,
            "data_dir": str(self.data_dir),
            "pid": os.getpid(),
        }

    def _maintain(self) -> None:
        while not self._stopped.wait(MAINTENANCE_SECONDS):
            try:
                self.org.purge_recycle_bin()
            except Exception:
                log.exception("emptying the recycle bin failed")

    def stop(self) -> None:
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()
        self.notifications.stop()
        discovery = self.data_dir / DISCOVERY_FILE
        try:
            if json.loads(discovery.read_text()).get("pid") == os.getpid():
                discovery.unlink()
        except (OSError, ValueError):
            pass
        self.store.close()
        self._lock_handle.close()


def _lock(path: Path) -> IO[str]:
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirBusyError(
            f"another emulator (pid {owner}) is using {path.parent}; stop it or choose another "
            "--data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
