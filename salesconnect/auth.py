"""Who is calling the JSON API: the bridge's service credential, a user's API token, or nobody.

Every `/api` request names its caller with `Authorization: Bearer TOKEN` (only `/healthz` and
`/openapi.json` are open):

* **The service credential** (`--service-token`, `TASKSYNC_SALESCONNECT_SERVICE_TOKEN`, or a
  file of them): the bridge's and the operator's. It may do everything, and it alone may send
  `X-Sync-Origin`, set Salesforce links, read the change feed, list users, report sync state,
  create users, set passwords and create API tokens. Several are accepted at once, so a new
  one can be rolled out before the old one is dropped; a token file is read again whenever it
  changes, so rotating needs no restart.
* **A user's API token** (`tok_<id>.<secret>`, made by the service credential through
  `POST /api/users/{id}/tokens` and shown once): that user's own tasks, settings and tokens,
  nothing else. Stored as its SHA-256 digest (256 random bits: a fast digest is as safe as a
  slow one here), compared in constant time, refused from the moment it is revoked.

No credential or an unknown one answers 401 with `WWW-Authenticate: Bearer`; a known caller
asking for what it may not do answers 403 (another user's `/api/users/{id}/...`) or 404 (another
user's task, so that whether it exists does not leak).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from salesconnect.database import Database
from salesconnect.errors import ForbiddenError, UnauthorizedError

_log = logging.getLogger("salesconnect.auth")

REALM: Final = "salesconnect"
SERVICE_TOKEN_MIN_LENGTH: Final = 32
SERVICE_TOKEN_MAX_LENGTH: Final = 512
TOKEN_ID_PREFIX: Final = "tok_"  # noqa: S105 - an id prefix, not a secret
TOKEN_SECRET_BYTES: Final = 32
USER_TOKEN_PATTERN: Final = re.compile(r"(tok_[0-9a-z]{26})\.([A-Za-z0-9_-]{43})")
SERVICE_TOKEN_PATTERN: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable, no comma
FILE_CHECK_INTERVAL: Final = 1.0
MAX_TOKEN_FILE_BYTES: Final = 64 * 1024


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_user_token(token_id: str) -> str:
    """A user's API token: its id (to find the row) and 256 random bits."""
    return f"{token_id}.{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"


@dataclass(frozen=True)
class Principal:
    """The caller: the service (`user_id` None) or one user through one of their tokens."""

    user_id: str | None
    token_id: str | None = None

    @property
    def is_service(self) -> bool:
        return self.user_id is None

    def may_act_for(self, user_id: str) -> bool:
        return self.is_service or self.user_id == user_id

    def idempotency_key(self, key: str) -> str:
        """Keys are the caller's own: a user can neither replay nor block another's key. The
        service's keys are stored as sent (what the bridge stored before tokens existed)."""
        if self.user_id is None:
            return key
        return "u:" + hashlib.sha256(f"{self.user_id}\x00{key}".encode()).hexdigest()


SERVICE: Final = Principal(None)


def bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    if description:
        challenge += f', error_description="{description}"'
    return challenge


def unauthorized(message: str, error: str | None = None) -> UnauthorizedError:
    return UnauthorizedError(
        "unauthorized",
        message,
        fields={
            "Authorization": ["Must be 'Bearer TOKEN': a user's API token or the service token."]
        },
        headers={"WWW-Authenticate": bearer_challenge(error, message if error else None)},
    )


def service_only(what: str) -> ForbiddenError:
    return ForbiddenError(
        "forbidden",
        f"{what} needs the service credential; a user's API token may not do it.",
        headers={"WWW-Authenticate": bearer_challenge("insufficient_scope")},
    )


def not_yours(user_id: str) -> ForbiddenError:
    return ForbiddenError(
        "forbidden",
        f"This token belongs to another user; it may not act for {user_id}.",
        headers={"WWW-Authenticate": bearer_challenge("insufficient_scope")},
    )


# -- the service credential ------------------------------------------------------------------


class ServiceTokenError(ValueError):
    """A service token or token file that cannot be used; the message never holds a token."""


def parse_service_tokens(text: str, source: str) -> tuple[str, ...]:
    """Tokens separated by commas or line breaks; each checked, none ever quoted back."""
    tokens = tuple(part.strip() for part in re.split(r"[,\n]", text) if part.strip())
    if not tokens:
        raise ServiceTokenError(f"{source}: holds no token")
    for number, token in enumerate(tokens, 1):
        if not SERVICE_TOKEN_PATTERN.fullmatch(token):
            raise ServiceTokenError(
                f"{source}: token {number} must be printable ASCII without spaces or commas"
            )
        if not SERVICE_TOKEN_MIN_LENGTH <= len(token) <= SERVICE_TOKEN_MAX_LENGTH:
            raise ServiceTokenError(
                f"{source}: token {number} must be {SERVICE_TOKEN_MIN_LENGTH}-"
                f"{SERVICE_TOKEN_MAX_LENGTH} characters long (it has {len(token)}); "
                "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if USER_TOKEN_PATTERN.fullmatch(token):
            raise ServiceTokenError(f"{source}: token {number} is shaped like a user's API token")
    return tokens


def read_token_file(path: Path) -> tuple[str, ...]:
    """The tokens in an owner-only file (mode 600 or 400), one a line or comma-separated."""
    try:
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ServiceTokenError(f"{path}: not a regular file")
            if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ServiceTokenError(
                    f"{path}: others than its owner may read or write it (mode "
                    f"{stat.S_IMODE(status.st_mode):04o}); make it private: chmod 600 {path}"
                )
            data = handle.read(MAX_TOKEN_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ServiceTokenError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ServiceTokenError(f"{path}: not a regular file") from None
    except PermissionError:
        raise ServiceTokenError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ServiceTokenError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ServiceTokenError(f"{path}: larger than {MAX_TOKEN_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceTokenError(f"{path}: not UTF-8 text") from None
    return parse_service_tokens(text, str(path))


class ServiceTokens:
    """The accepted service tokens, as digests. Given as values they are fixed; given as a
    file, the file is looked at again at most once a second and read again when it changed,
    so a token is added or dropped without a restart. A file that turns unusable (removed,
    emptied, opened to others) is logged and the tokens read last stay in force."""

    def __init__(self, tokens: Sequence[str] = (), *, file: Path | None = None) -> None:
        self.file = file
        self._digests: tuple[str, ...] = tuple(token_digest(t) for t in tokens)
        self._lock = threading.Lock()
        self._file_state: tuple[int, int, int] | None = None
        self._next_check = 0.0
        if file is not None:
            self._load(file)

    def __len__(self) -> int:
        return len(self._digests)

    def _load(self, file: Path) -> None:
        status = file.stat()
        tokens = read_token_file(file)
        self._digests = tuple(token_digest(t) for t in tokens)
        self._file_state = (status.st_mtime_ns, status.st_size, status.st_ino)

    def _refresh(self) -> None:
        file = self.file
        if file is None:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + FILE_CHECK_INTERVAL
            try:
                status = file.stat()
                if (status.st_mtime_ns, status.st_size, status.st_ino) == self._file_state:
                    return
                before = len(self._digests)
                self._load(file)
            except (OSError, ServiceTokenError) as exc:
                _log.error("service token file not reloaded, the previous tokens stay: %s", exc)
                return
            _log.warning(
                "service tokens reloaded from %s: %d accepted (before: %d)",
                file,
                len(self._digests),
                before,
            )

    def matches(self, token: str) -> bool:
        self._refresh()
        presented = token_digest(token)
        found = False
        for accepted in self._digests:  # every one, so timing says nothing about which
            found |= hmac.compare_digest(accepted, presented)
        return found


# -- authenticating a request ----------------------------------------------------------------


class Authenticator:
    """Turns a request's `Authorization` header into a `Principal`, or raises 401."""

    def __init__(self, database: Database, service_tokens: ServiceTokens) -> None:
        self.database = database
        self.service_tokens = service_tokens

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is None:
            raise unauthorized("Authentication required: send Authorization: Bearer TOKEN.")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized(
                "The Authorization header must be 'Bearer TOKEN'.", error="invalid_request"
            )
        if self.service_tokens.matches(token):
            return SERVICE
        found = USER_TOKEN_PATTERN.fullmatch(token)
        if found is not None:
            user_id = await run_in_threadpool(self._user_of, found.group(1), token)
            if user_id is not None:
                return Principal(user_id, found.group(1))
        raise unauthorized("The token is unknown or revoked.", error="invalid_token")

    def _user_of(self, token_id: str, token: str) -> str | None:
        from salesconnect import credentials  # noqa: PLC0415 - credentials imports this module

        with self.database.read() as connection:
            row = credentials.find_token(connection, token_id)
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.token_digest, token_digest(token)):
            return None
        return str(row.user_id)
