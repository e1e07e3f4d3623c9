"""Metering every HTTP request the bridge sends to Salesforce, in one place.

`SalesforceCallMeter` is the requests transport adapter `bridge.salesforce.session` mounts on
the session every Salesforce client uses (simple-salesforce's REST calls, logins, the replication
calls): each request is counted by resource (ids generalised, e.g. `sobjects/Task/{id}`),
method and status, timed, and its `Sforce-Limit-Info: api-usage=USED/LIMIT` answer header
becomes the daily-allowance gauges. The bearer token of each request is added to the secrets
the logs redact. The outcome feeds `SalesforceCalls`, which the readiness check reads.

`SalesforceReachability` answers "can this process use Salesforce?" from what its calls saw,
without spending API calls: only while the last call failed (or none was made yet) does it
probe, at most every `probe_every` seconds and in the background, by logging in if needed and
asking for the API versions list, which no daily allowance counts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from bridge.observability import metrics
from bridge.observability.health import CheckResult
from bridge.observability.logs import SECRETS

log = logging.getLogger(__name__)

LIMIT_INFO_HEADER: Final = "Sforce-Limit-Info"
PROBE_CALL_OPTIONS: Final = {"Sforce-Call-Options": "client=tasksync-probe"}
LOGIN_RESOURCES: Final = frozenset({"oauth2/token", "soap/login"})
DEFAULT_PROBE_EVERY: Final = 10.0
DEFAULT_PROBE_TIMEOUT: Final = 10.0

_DATA_PATH: Final = re.compile(r"^/services/data(?:/v\d+\.\d+)?(?:/(?P<rest>.*))?$")
_API_USAGE: Final = re.compile(r"api-usage=(\d+)/(\d+)")
_SOBJECT_ACTIONS: Final = frozenset({"describe", "updated", "deleted", "listviews", "quickActions"})


def salesforce_resource(url: str) -> str:
    """The REST resource a URL addresses, with record ids and external-id values generalised, so
    the `resource` label has a handful of values, not one per record."""
    path = urlsplit(url).path.rstrip("/")
    if path == "/services/oauth2/token":
        return "oauth2/token"
    if path.startswith("/services/Soap/"):
        return "soap/login"
    found = _DATA_PATH.match(path)
    if found is None:
        return "other"
    if found.group("rest") is None and path == "/services/data":
        return "versions"
    segments = [segment for segment in (found.group("rest") or "").split("/") if segment]
    return _data_resource(segments)


def _data_resource(segments: list[str]) -> str:
    head = segments[0] if segments else "resources"
    if head == "sobjects":
        parts = segments[:2]
        tail = segments[2:]
        if tail and tail[0] in _SOBJECT_ACTIONS:
            parts.append(tail[0])
        elif len(tail) == 1:
            parts.append("{id}")
        elif len(tail) >= 2:
            parts += [tail[0], "{value}"]
        return "/".join(parts)
    if head == "composite":
        return "/".join(segments[:4])
    return head


def parse_api_usage(header: str | None) -> tuple[int, int] | None:
    """`api-usage=25/15000` to (used, limit)."""
    if not header:
        return None
    found = _API_USAGE.search(header)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2))


@dataclass(frozen=True)
class CallsSnapshot:
    last_ok: float | None
    last_failed: float | None
    failure: str | None
    api_used: int | None
    api_limit: int | None


class SalesforceCalls:
    """What this process's Salesforce calls have seen lately (monotonic times)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ok: float | None = None
        self._last_failed: float | None = None
        self._failure: str | None = None
        self._api: tuple[int, int] | None = None

    def succeeded(self) -> None:
        with self._lock:
            self._last_ok = self._clock()

    def failed(self, why: str) -> None:
        with self._lock:
            self._last_failed = self._clock()
            self._failure = why

    def api_usage(self, used: int, limit: int) -> None:
        with self._lock:
            self._api = (used, limit)
        metrics.SALESFORCE_API_USED.set(used)
        metrics.SALESFORCE_API_LIMIT.set(limit)
        metrics.SALESFORCE_API_REMAINING.set(max(0, limit - used))

    def snapshot(self) -> CallsSnapshot:
        with self._lock:
            used, limit = self._api if self._api is not None else (None, None)
            return CallsSnapshot(self._last_ok, self._last_failed, self._failure, used, limit)

    def reset(self) -> None:
        with self._lock:
            self._last_ok = self._last_failed = None
            self._failure = None
            self._api = None


CALLS: Final = SalesforceCalls()


class SalesforceCallMeter(HTTPAdapter):
    """A requests adapter that counts, times and reads the allowance of every call."""

    def __init__(self, calls: SalesforceCalls = CALLS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = calls

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        resource = salesforce_resource(request.url or "")
        method = request.method or "GET"
        _remember_bearer_token(request.headers)
        started = time.perf_counter()
        try:
            response = super().send(request, *args, **kwargs)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            metrics.SALESFORCE_REQUESTS.labels(resource, method, "error").inc()
            metrics.SALESFORCE_DURATION.labels(resource, method).observe(elapsed)
            self.calls.failed(f"{resource}: {type(exc).__name__}")
            raise
        elapsed = time.perf_counter() - started
        status = response.status_code
        metrics.SALESFORCE_REQUESTS.labels(resource, method, str(status)).inc()
        metrics.SALESFORCE_DURATION.labels(resource, method).observe(elapsed)
        if status >= 500 or (resource in LOGIN_RESOURCES and status >= 400):
            self.calls.failed(f"{resource}: HTTP {status}")
        else:
            self.calls.succeeded()
        usage = parse_api_usage(response.headers.get(LIMIT_INFO_HEADER))
        if usage is not None:
            self.calls.api_usage(*usage)
        return response


def _remember_bearer_token(headers: Mapping[str, str]) -> None:
    authorization = headers.get("Authorization")
    if authorization:
        token = authorization.partition(" ")[2] or authorization
        if token not in SECRETS:
            SECRETS.add(token)


def meter_salesforce_calls(session: requests.Session) -> requests.Session:
    """Mount the meter on both schemes of `session` (the emulator and proxies may be http)."""
    meter = SalesforceCallMeter()
    session.mount("https://", meter)
    session.mount("http://", meter)
    return session


class LoggedInClient(Protocol):
    """What the probe needs of simple-salesforce's client."""

    session: requests.Session
    sf_instance: str


class SalesforceLogin(Protocol):
    """What the probe needs of `bridge.salesforce.session.SalesforceSession`."""

    @property
    def client(self) -> Any: ...


class SalesforceReachability:
    """Readiness: Salesforce answered this process's last call, or a probe now."""

    def __init__(
        self,
        session: SalesforceLogin,
        *,
        calls: SalesforceCalls = CALLS,
        probe_every: float = DEFAULT_PROBE_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.calls = calls
        self.probe_every = probe_every
        self._clock = clock
        self._lock = threading.Lock()
        self._probing = False
        self._probed_at: float | None = None

    def start(self) -> SalesforceReachability:
        """Probe at once when nothing is known yet, so readiness settles soon after start."""
        self.check()
        return self

    def check(self) -> CheckResult:
        state = self.calls.snapshot()
        allowance = (
            f"; daily API requests {state.api_used}/{state.api_limit}"
            if state.api_limit is not None
            else ""
        )
        if state.last_ok is not None and (
            state.last_failed is None or state.last_ok >= state.last_failed
        ):
            return CheckResult(True, f"answering{allowance}")
        self._probe_soon()
        if state.last_failed is None:
            return CheckResult(False, "not reached yet (probing)")
        return CheckResult(False, f"last call failed: {state.failure}{allowance}")

    def _probe_soon(self) -> None:
        with self._lock:
            now = self._clock()
            if self._probing or (
                self._probed_at is not None and now - self._probed_at < self.probe_every
            ):
                return
            self._probing = True
            self._probed_at = now
        threading.Thread(target=self._probe, name="salesforce probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            client: LoggedInClient = self.session.client
            client.session.get(
                f"https://{client.sf_instance}/services/data",
                headers=PROBE_CALL_OPTIONS,
                timeout=DEFAULT_PROBE_TIMEOUT,
            )
        except Exception as exc:  # recorded by the meter; the check reports it
            log.debug("Salesforce probe failed: %r", exc)
        finally:
            with self._lock:
                self._probing = False
