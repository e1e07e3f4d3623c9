"""An authenticated simple-salesforce client that renews itself when its session expires.

Real orgs (`*.salesforce.com` login hosts) use simple-salesforce's own flows: username and
password with a security token, OAuth password grant, JWT bearer, client credentials. Any other
login URL (the local emulator, a proxy) gets its token from `{login_url}/services/oauth2/token`
here, and the session is handed to simple-salesforce. simple-salesforce does not re-login in
session mode, so `SalesforceSession.call` does it on `INVALID_SESSION_ID`, in both modes.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from bridge.observability.salesforce import meter_salesforce_calls

DEFAULT_API_VERSION: Final = "62.0"
SALESFORCE_DOMAIN_SUFFIX: Final = ".salesforce.com"
CALL_OPTIONS_HEADER: Final = "Sforce-Call-Options"
CALL_OPTIONS_VALUE: Final = "client=tasksync"

T = TypeVar("T")


class AuthFlow(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 - the OAuth grant type, not a secret
    CLIENT_CREDENTIALS = "client_credentials"
    JWT = "jwt"


@dataclass(frozen=True)
class SalesforceCredentials:
    """How to log in. Secrets are kept out of `repr` so they never reach a log line."""

    login_url: str
    flow: AuthFlow = AuthFlow.PASSWORD
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    private_key_file: Path | None = None
    ca_bundle: str | None = None
    api_version: str = DEFAULT_API_VERSION
    timeout_seconds: float = 60.0

    @property
    def login_host(self) -> str:
        return urlsplit(self.login_url).hostname or ""

    @property
    def is_salesforce_domain(self) -> bool:
        return self.login_host.endswith(SALESFORCE_DOMAIN_SUFFIX)

    def missing(self) -> list[str]:
        """The settings this flow needs that are not set, by name."""
        needed: dict[AuthFlow, tuple[str, ...]] = {
            AuthFlow.PASSWORD: ("username", "password"),
            AuthFlow.CLIENT_CREDENTIALS: ("client_id", "client_secret"),
            AuthFlow.JWT: ("username", "client_id", "private_key_file"),
        }
        return [name for name in needed[self.flow] if not getattr(self, name)]


class _TimeoutSession(requests.Session):
    """requests has no session-wide timeout; a hung Salesforce must never hang a worker."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def http_session(credentials: SalesforceCredentials) -> requests.Session:
    session = _TimeoutSession(credentials.timeout_seconds)
    meter_salesforce_calls(session)  # every call counted, timed and its allowance read
    if credentials.ca_bundle:
        session.verify = credentials.ca_bundle
        # requests lets REQUESTS_CA_BUNDLE override Session.verify unless trust_env is off.
        session.trust_env = False
    return session


def _token_from_endpoint(
    credentials: SalesforceCredentials, session: requests.Session
) -> tuple[str, str]:
    """OAuth token request against a login URL that simple-salesforce cannot address."""
    data: dict[str, str] = {"grant_type": credentials.flow.value}
    if credentials.flow is AuthFlow.PASSWORD:
        data.update(
            username=credentials.username or "",
            password=(credentials.password or "") + (credentials.security_token or ""),
        )
        if credentials.client_id:
            data["client_id"] = credentials.client_id
        if credentials.client_secret:
            data["client_secret"] = credentials.client_secret
    elif credentials.flow is AuthFlow.CLIENT_CREDENTIALS:
        data.update(
            client_id=credentials.client_id or "", client_secret=credentials.client_secret or ""
        )
    else:
        raise SalesforceAuthenticationFailed(
            "UNSUPPORTED_FLOW", "the JWT bearer flow needs a *.salesforce.com login URL"
        )
    url = credentials.login_url.rstrip("/") + "/services/oauth2/token"
    response = session.post(url, data=data)
    try:
        body = response.json()
    except ValueError:
        raise SalesforceAuthenticationFailed(response.status_code, response.text[:200]) from None
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else response.status_code
        detail = body.get("error_description") if isinstance(body, dict) else None
        raise SalesforceAuthenticationFailed(error, detail)
    return str(body["access_token"]), str(body["instance_url"])


def _login(credentials: SalesforceCredentials, session: requests.Session) -> Salesforce:
    if not credentials.is_salesforce_domain:
        token, instance_url = _token_from_endpoint(credentials, session)
        return Salesforce(
            instance_url=instance_url,
            session_id=token,
            session=session,
            version=credentials.api_version,
        )
    domain = credentials.login_host.removesuffix(SALESFORCE_DOMAIN_SUFFIX)
    if credentials.flow is AuthFlow.JWT:
        return Salesforce(
            username=credentials.username,
            consumer_key=credentials.client_id,
            privatekey_file=str(credentials.private_key_file),
            domain=domain,
            session=session,
            version=credentials.api_version,
        )
    if credentials.flow is AuthFlow.CLIENT_CREDENTIALS:
        return Salesforce(
            consumer_key=credentials.client_id,
            consumer_secret=credentials.client_secret,
            domain=domain,
            session=session,
            version=credentials.api_version,
        )
    if credentials.client_id and credentials.client_secret:
        return Salesforce(
            username=credentials.username,
            password=(credentials.password or "") + (credentials.security_token or ""),
            consumer_key=credentials.client_id,
            consumer_secret=credentials.client_secret,
            domain=domain,
            session=session,
            version=credentials.api_version,
        )
    return Salesforce(
        username=credentials.username,
        password=credentials.password,
        security_token=credentials.security_token or "",
        domain=domain,
        session=session,
        version=credentials.api_version,
    )


class SalesforceSession:
    """One logged-in client, shared by a process's threads, renewed on an expired session."""

    def __init__(self, credentials: SalesforceCredentials) -> None:
        missing = credentials.missing()
        if missing:
            raise ValueError(
                f"Salesforce {credentials.flow.value} login needs: {', '.join(missing)}"
            )
        self.credentials = credentials
        self._http = http_session(credentials)
        self._lock = threading.Lock()
        self._client: Salesforce | None = None
        self.logins = 0

    @property
    def client(self) -> Salesforce:
        with self._lock:
            if self._client is None:
                self._client = _login(self.credentials, self._http)
                self.logins += 1
            return self._client

    def reauthenticate(self, stale: Salesforce | None = None) -> Salesforce:
        """Log in again, unless another thread already replaced the stale client."""
        with self._lock:
            if self._client is None or self._client is stale:
                self._client = _login(self.credentials, self._http)
                self.logins += 1
            return self._client

    def call(self, operation: Callable[[Salesforce], T]) -> T:
        """Run one API operation; on `INVALID_SESSION_ID` log in again and retry it once."""
        client = self.client
        try:
            return operation(client)
        except SalesforceExpiredSession:
            return operation(self.reauthenticate(client))

    @property
    def instance_url(self) -> str:
        return f"https://{self.client.sf_instance}"

    @property
    def call_headers(self) -> dict[str, str]:
        """Headers every bridge call sends, so org admins can tell tasksync's API use apart."""
        return {CALL_OPTIONS_HEADER: CALL_OPTIONS_VALUE}
