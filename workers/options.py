"""Command-line options shared by several commands, each with its TASKSYNC_* variable.

Defined once here so every command spells a setting and its environment variable the same
way; the README's configuration table is checked against these by the tests.

Secrets may come from a file instead of the command line or the environment: each secret
option `--x` (TASKSYNC_X) has a `--x-file` (TASKSYNC_X_FILE) naming a file that holds only the
secret. The file is read once at start; whitespace at its end (the final newline) is dropped;
a missing, empty or unreadable file, or one its group or others may read or write (anything
but mode 600 or 400), stops the command with exit status 2 and a message naming the option.
Giving both the secret and its file is refused too. The passwords inside the AMQP and ledger
URLs come from `--amqp-password-file` and `--ledger-password-file` (the URL then names only the
user).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import click

from bridge.messaging.connection import (
    CA_FILE_PARAMETER,
    CERT_FILE_PARAMETER,
    KEY_FILE_PARAMETER,
    AmqpTls,
    TlsFileError,
    connection_parameters,
    redact_url,
    with_tls,
)
from bridge.observability.logs import SECRETS
from bridge.salesconnect.client import configure_token
from bridge.salesforce.session import DEFAULT_API_VERSION, AuthFlow, SalesforceCredentials

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_MANAGEMENT_URL: Final = "http://guest:guest@127.0.0.1:15672"
DEFAULT_DATA_DIR: Final = Path(".tasksync")


# -- secrets from files ------------------------------------------------------------------------

MAX_SECRET_BYTES: Final = 64 * 1024
# Group and others may do nothing with a secret file (as OpenSSH asks of private keys).
OPEN_MODE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO


class SecretFileError(ValueError):
    """A secret file that is missing, unreadable, empty or open to others."""


def check_private_file(path: Path) -> os.stat_result:
    """The file's status, when it is a regular file only its owner may access (mode 600/400)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise SecretFileError(f"{path}: {exc.strerror or exc}") from None
    _check_private_status(path, status)
    return status


def _check_private_status(path: Path, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise SecretFileError(f"{path}: not a regular file")
    if status.st_mode & OPEN_MODE_BITS:
        raise SecretFileError(
            f"{path}: others than its owner may read or write it "
            f"(mode {stat.S_IMODE(status.st_mode):04o}); make it private: chmod 600 {path}"
        )


def read_secret_file(path: Path) -> str:
    """The secret `path` holds, whitespace at its end removed (see the module docstring)."""
    try:
        with path.open("rb") as handle:
            _check_private_status(path, os.fstat(handle.fileno()))
            data = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise SecretFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SecretFileError(f"{path}: not a regular file") from None
    except PermissionError:
        raise SecretFileError(
            f"{path}: permission denied (it must be readable by the user tasksync runs as)"
        ) from None
    except OSError as exc:
        raise SecretFileError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{path}: larger than {MAX_SECRET_BYTES} bytes; not a secret")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"{path}: not UTF-8 text") from None
    secret = text.rstrip()
    if not secret:
        raise SecretFileError(f"{path}: empty")
    return secret


@dataclass(frozen=True)
class SecretFile:
    """`--x-file` (TASKSYNC_X_FILE) for the secret option `--x` (TASKSYNC_X)."""

    param: str  # the secret's keyword argument, e.g. salesforce_password
    option: str  # the secret's option, e.g. --salesforce-password
    envvar: str
    what: str  # for --help: "the integration user's password"
    # Several secrets, one per line in the file, become one comma-separated value.
    lines_are_a_list: bool = False

    @property
    def file_option(self) -> str:
        return f"{self.option}-file"

    @property
    def file_param(self) -> str:
        return f"{self.param}_file"

    @property
    def file_envvar(self) -> str:
        return f"{self.envvar}_FILE"

    @property
    def hint(self) -> str:
        return f"'{self.file_option}' / {self.file_envvar}"

    def click_option(self) -> Callable[[F], F]:
        listing = " (one per line or separated by commas)" if self.lines_are_a_list else ""
        return click.option(
            self.file_option,
            self.file_param,
            envvar=self.file_envvar,
            show_envvar=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"File holding {self.what}{listing} instead of {self.option}; "
            "readable by its owner only (chmod 600).",
        )

    def resolve(self, kwargs: dict[str, Any]) -> None:
        """Replace the file's keyword argument by the secret it holds."""
        path: Path | None = kwargs.pop(self.file_param)
        if path is None:
            return
        if kwargs.get(self.param):
            raise click.UsageError(
                f"give {self.option} ({self.envvar}) or {self.file_option} "
                f"({self.file_envvar}), not both",
                ctx=click.get_current_context(silent=True),
            )
        secret = _read(path, self.hint)
        if self.lines_are_a_list:
            secret = ",".join(line.strip() for line in secret.splitlines() if line.strip())
        kwargs[self.param] = secret


def _read(path: Path, hint: str) -> str:
    try:
        return read_secret_file(path)
    except SecretFileError as exc:
        raise _bad(str(exc), hint) from None


def _bad(message: str, hint: str) -> click.BadParameter:
    return click.BadParameter(message, ctx=click.get_current_context(silent=True), param_hint=hint)


def secret_file_option(secret: SecretFile) -> Callable[[F], F]:
    """Add `secret`'s `--x-file` to a command whose `--x` is declared elsewhere."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_secret(*args: Any, **kwargs: Any) -> Any:
            secret.resolve(kwargs)
            return command(*args, **kwargs)

        return secret.click_option()(cast(F, with_secret))

    return decorate


INGRESS_SECRET_FILE: Final = SecretFile(
    "secret",
    "--secret",
    "TASKSYNC_INGRESS_SECRET",
    "the signing secret(s) shared with the Salesforce-side package",
    lines_are_a_list=True,
)


def _with_url_password(url: str, password: str, *, option: str, hint: str) -> str:
    """`url` with `password` (percent-encoded) for the user it names."""
    parts = urlsplit(url)
    if parts.password is not None and unquote(parts.password) == password:
        return url  # the same password twice, e.g. a child of `tasksync up`
    if parts.password is not None:
        raise click.UsageError(
            f"{option} {redact_url(url)} holds a password already: give it without one "
            f"(scheme://USER@HOST/...) when the password comes from {hint}",
            ctx=click.get_current_context(silent=True),
        )
    if not parts.username:
        raise click.UsageError(
            f"{option} {url} names no user for the password from {hint} (scheme://USER@HOST/...)",
            ctx=click.get_current_context(silent=True),
        )
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


# -- RabbitMQ ----------------------------------------------------------------------------------

_AMQP_HINTS: Final = {
    "ca": "'--amqp-ca-file' / TASKSYNC_AMQP_CA_FILE",
    "cert": "'--amqp-cert-file' / TASKSYNC_AMQP_CERT_FILE",
    "key": "'--amqp-key-file' / TASKSYNC_AMQP_KEY_FILE",
    "password": "'--amqp-password-file' / TASKSYNC_AMQP_PASSWORD_FILE",
    "url": "'--amqp-url' / TASKSYNC_AMQP_URL",
}

_AMQP_OPTIONS: Final = (
    click.option(
        "--amqp-url",
        envvar="TASKSYNC_AMQP_URL",
        show_envvar=True,
        default=DEFAULT_AMQP_URL,
        show_default=True,
        help="RabbitMQ connection URL (amqp:// or amqps:// for TLS), naming this component's "
        "own user (deploy/rabbitmq/definitions.json).",
    ),
    click.option(
        "--amqp-password-file",
        envvar="TASKSYNC_AMQP_PASSWORD_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="File holding the password of the user --amqp-url names (the URL then has none); "
        "readable by its owner only (chmod 600).",
    ),
    click.option(
        "--amqp-ca-file",
        envvar="TASKSYNC_AMQP_CA_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="PEM CA certificate(s) to trust for an amqps:// broker, instead of the system's. "
        "The broker's certificate and host name are always verified.",
    ),
    click.option(
        "--amqp-cert-file",
        envvar="TASKSYNC_AMQP_CERT_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="PEM client certificate (chain) to present to an amqps:// broker that asks for one.",
    ),
    click.option(
        "--amqp-key-file",
        envvar="TASKSYNC_AMQP_KEY_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The client certificate's PEM private key (unless the certificate file holds it); "
        "readable by its owner only (chmod 600).",
    ),
)


def _readable(path: Path, hint: str) -> str:
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise _bad(f"{path}: no such file", hint) from None
    except IsADirectoryError:
        raise _bad(f"{path}: not a regular file", hint) from None
    except OSError as exc:
        raise _bad(f"{path}: {exc.strerror or exc}", hint) from None
    return str(path)


def resolve_amqp_url(
    url: str,
    *,
    password_file: Path | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> str:
    """The URL every connection of the process uses: the password from its file, the TLS files
    as query parameters (see bridge.messaging.connection); each file checked now, so a wrong
    setting stops the command at start (exit 2) rather than failing every reconnect."""
    if password_file is not None:
        url = _with_url_password(
            url,
            _read(password_file, _AMQP_HINTS["password"]),
            option="--amqp-url",
            hint="--amqp-password-file",
        )
    given = {
        name: path
        for name, path in (("ca", ca_file), ("cert", cert_file), ("key", key_file))
        if path is not None
    }
    if given and urlsplit(url).scheme != "amqps":
        names = ", ".join(f"--amqp-{name}-file" for name in given)
        raise click.UsageError(
            f"{names} only applies to TLS: --amqp-url must start with amqps:// "
            f"(it is {redact_url(url)})",
            ctx=click.get_current_context(silent=True),
        )
    if key_file is not None and cert_file is None:
        raise click.UsageError(
            "--amqp-key-file needs --amqp-cert-file (the client certificate it belongs to)",
            ctx=click.get_current_context(silent=True),
        )
    if key_file is not None:
        try:
            check_private_file(key_file)
        except SecretFileError as exc:
            raise _bad(str(exc), _AMQP_HINTS["key"]) from None
    files = {name: _readable(path, _AMQP_HINTS[name]) for name, path in given.items()}
    try:
        url = with_tls(
            url,
            AmqpTls(
                ca_file=files.get("ca"), cert_file=files.get("cert"), key_file=files.get("key")
            ),
        )
    except ValueError as exc:
        raise _bad(str(exc), _AMQP_HINTS["url"]) from None
    try:
        connection_parameters(url, name="-")
    except TlsFileError as exc:
        option = {CA_FILE_PARAMETER: "ca", CERT_FILE_PARAMETER: "cert", KEY_FILE_PARAMETER: "key"}
        name = option[exc.parameter]
        if name in files:
            raise _bad(f"{exc.path}: {exc.reason}", _AMQP_HINTS[name]) from None
        raise _bad(str(exc), _AMQP_HINTS["url"]) from None
    except ValueError as exc:
        raise _bad(str(exc), _AMQP_HINTS["url"]) from None
    return url


def amqp_url_option(command: F) -> F:
    """`--amqp-url` with its password file and TLS files; the command gets one `amqp_url`."""

    @functools.wraps(command)
    def with_amqp(*args: Any, **kwargs: Any) -> Any:
        kwargs["amqp_url"] = resolve_amqp_url(
            kwargs["amqp_url"],
            password_file=kwargs.pop("amqp_password_file"),
            ca_file=kwargs.pop("amqp_ca_file"),
            cert_file=kwargs.pop("amqp_cert_file"),
            key_file=kwargs.pop("amqp_key_file"),
        )
        return command(*args, **kwargs)

    decorated: Callable[..., Any] = with_amqp
    for option in reversed(_AMQP_OPTIONS):
        decorated = option(decorated)
    return cast(F, decorated)


def management_url_option(command: F) -> F:
    return click.option(
        "--management-url",
        envvar="TASKSYNC_MANAGEMENT_URL",
        show_envvar=True,
        default=DEFAULT_MANAGEMENT_URL,
        show_default=True,
        help="RabbitMQ management API base URL, with credentials.",
    )(command)


def data_dir_option(command: F) -> F:
    return click.option(
        "--data-dir",
        envvar="TASKSYNC_DATA_DIR",
        show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="Where local state lives (ledger, emulator data, logs).",
    )(command)


DEFAULT_SHARD_COUNT: Final = 4
DEFAULT_RETRY_TIERS: Final = "5s,30s,5m,30m"


def ledger_url_option(command: F) -> F:
    """`--ledger-url` and `--ledger-password-file`; the command gets one `ledger_url`."""

    @functools.wraps(command)
    def with_ledger(*args: Any, **kwargs: Any) -> Any:
        password_file: Path | None = kwargs.pop("ledger_password_file")
        if password_file is not None:
            hint = "'--ledger-password-file' / TASKSYNC_LEDGER_PASSWORD_FILE"
            url: str | None = kwargs["ledger_url"]
            if not url or urlsplit(url).scheme.startswith("sqlite"):
                raise click.UsageError(
                    "--ledger-password-file is for a PostgreSQL ledger: give --ledger-url "
                    "postgresql://USER@HOST/DB too",
                    ctx=click.get_current_context(silent=True),
                )
            kwargs["ledger_url"] = _with_url_password(
                url, _read(password_file, hint), option="--ledger-url", hint=hint
            )
        return command(*args, **kwargs)

    decorated: Callable[..., Any] = click.option(
        "--ledger-password-file",
        envvar="TASKSYNC_LEDGER_PASSWORD_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="File holding the password of the PostgreSQL user --ledger-url names (the URL "
        "then has none); readable by its owner only (chmod 600).",
    )(with_ledger)
    return cast(
        F,
        click.option(
            "--ledger-url",
            envvar="TASKSYNC_LEDGER_URL",
            show_envvar=True,
            default=None,
            help=(
                "Dedup ledger database: sqlite:///path or postgresql://user@host/db "
                "[default: sqlite file ledger.sqlite3 in the data dir]."
            ),
        )(decorated),
    )


def _parse_retry_tiers(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from bridge.messaging.topology import parse_retry_tiers  # noqa: PLC0415 - keeps --help fast

    try:
        parse_retry_tiers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def topology_options(command: F) -> F:
    """`--shard-count` and `--retry-tiers`: must match across producers, workers and broker."""
    command = click.option(
        "--retry-tiers",
        envvar="TASKSYNC_RETRY_TIERS",
        show_envvar=True,
        default=DEFAULT_RETRY_TIERS,
        show_default=True,
        callback=_parse_retry_tiers,
        help="Retry delays, shortest first; each is a queue tasksync.<direction>.retry.<delay>.",
    )(command)
    return click.option(
        "--shard-count",
        envvar="TASKSYNC_SHARD_COUNT",
        show_envvar=True,
        type=click.IntRange(1, 64),
        default=DEFAULT_SHARD_COUNT,
        show_default=True,
        help="Shard queues per direction (one task always goes to the same shard).",
    )(command)


def shards_option(command: F) -> F:
    """A worker's shard selection; overlapping selections across processes are hot standbys."""
    return click.option(
        "--shards",
        envvar="TASKSYNC_SHARDS",
        show_envvar=True,
        default="all",
        show_default=True,
        help="Shards this worker consumes: all, 0-3, 0,2 or 1-2,5.",
    )(command)


DEFAULT_SALESFORCE_LOGIN_URL: Final = "https://login.salesforce.com"
DEFAULT_SALESCONNECT_URL: Final = "http://127.0.0.1:8080"

SALESFORCE_SECRET_FILES: Final = (
    SecretFile(
        "salesforce_password",
        "--salesforce-password",
        "TASKSYNC_SALESFORCE_PASSWORD",
        "the integration user's password",
    ),
    SecretFile(
        "salesforce_security_token",
        "--salesforce-security-token",
        "TASKSYNC_SALESFORCE_SECURITY_TOKEN",
        "the security token",
    ),
    SecretFile(
        "salesforce_client_secret",
        "--salesforce-client-secret",
        "TASKSYNC_SALESFORCE_CLIENT_SECRET",
        "the connected app's consumer secret",
    ),
)


_SALESFORCE_OPTIONS: Final = (
    click.option(
        "--salesforce-login-url",
        envvar="TASKSYNC_SALESFORCE_LOGIN_URL",
        show_envvar=True,
        default=DEFAULT_SALESFORCE_LOGIN_URL,
        show_default=True,
        help="Where to log in: login/test.salesforce.com, a My Domain, or the local emulator's "
        "instance URL (any host not ending in .salesforce.com gets its token from "
        "{url}/services/oauth2/token).",
    ),
    click.option(
        "--salesforce-auth",
        envvar="TASKSYNC_SALESFORCE_AUTH",
        show_envvar=True,
        type=click.Choice([flow.value for flow in AuthFlow]),
        default=AuthFlow.PASSWORD.value,
        show_default=True,
        help="Login flow: password (username, password, optional security token or OAuth "
        "client), client_credentials (OAuth client), jwt (username, client id, private key).",
    ),
    click.option(
        "--salesforce-username",
        envvar="TASKSYNC_SALESFORCE_USERNAME",
        show_envvar=True,
        help="The integration user's username.",
    ),
    click.option(
        "--salesforce-password",
        envvar="TASKSYNC_SALESFORCE_PASSWORD",
        show_envvar=True,
        help="The integration user's password (prefer the environment variable or the file: "
        "a command line is visible to every local user).",
    ),
    SALESFORCE_SECRET_FILES[0].click_option(),
    click.option(
        "--salesforce-security-token",
        envvar="TASKSYNC_SALESFORCE_SECURITY_TOKEN",
        show_envvar=True,
        help="Appended to the password for orgs that require it.",
    ),
    SALESFORCE_SECRET_FILES[1].click_option(),
    click.option(
        "--salesforce-client-id",
        envvar="TASKSYNC_SALESFORCE_CLIENT_ID",
        show_envvar=True,
        help="The connected app's consumer key.",
    ),
    click.option(
        "--salesforce-client-secret",
        envvar="TASKSYNC_SALESFORCE_CLIENT_SECRET",
        show_envvar=True,
        help="The connected app's consumer secret (prefer the environment variable or the file).",
    ),
    SALESFORCE_SECRET_FILES[2].click_option(),
    click.option(
        "--salesforce-private-key-file",
        envvar="TASKSYNC_SALESFORCE_PRIVATE_KEY_FILE",
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="PEM private key for the JWT bearer flow; readable by its owner only (chmod 600).",
    ),
    click.option(
        "--salesforce-ca-bundle",
        envvar="TASKSYNC_SALESFORCE_CA_BUNDLE",
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True),
        help="CA certificates to trust for Salesforce (the emulator's ca.pem locally); "
        "the system's by default.",
    ),
    click.option(
        "--salesforce-api-version",
        envvar="TASKSYNC_SALESFORCE_API_VERSION",
        show_envvar=True,
        default=DEFAULT_API_VERSION,
        show_default=True,
        help="REST API version.",
    ),
)


def _private_key_file(path: Path | None) -> Path | None:
    if path is not None:
        try:
            check_private_file(path)
        except SecretFileError as exc:
            raise _bad(
                str(exc), "'--salesforce-private-key-file' / TASKSYNC_SALESFORCE_PRIVATE_KEY_FILE"
            ) from None
    return path


def salesforce_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """All Salesforce login settings, handed to the command as one `salesforce` argument of
    type `SalesforceCredentials`; the secrets may come from files (`--salesforce-*-file`)."""

    @functools.wraps(command)
    def with_credentials(*args: Any, **kwargs: Any) -> Any:
        for secret in SALESFORCE_SECRET_FILES:
            secret.resolve(kwargs)
        flow = AuthFlow(kwargs.pop("salesforce_auth"))
        credentials = SalesforceCredentials(
            login_url=kwargs.pop("salesforce_login_url"),
            flow=flow,
            username=kwargs.pop("salesforce_username"),
            password=kwargs.pop("salesforce_password"),
            security_token=kwargs.pop("salesforce_security_token"),
            client_id=kwargs.pop("salesforce_client_id"),
            client_secret=kwargs.pop("salesforce_client_secret"),
            private_key_file=_private_key_file(kwargs.pop("salesforce_private_key_file")),
            ca_bundle=kwargs.pop("salesforce_ca_bundle"),
            api_version=kwargs.pop("salesforce_api_version"),
        )
        missing = credentials.missing()
        if missing:
            names = ", ".join(f"--salesforce-{name.replace('_', '-')}" for name in missing)
            raise click.UsageError(f"the {flow.value} Salesforce login needs {names}")
        return command(*args, salesforce=credentials, **kwargs)

    decorated: Callable[..., Any] = with_credentials
    for option in reversed(_SALESFORCE_OPTIONS):
        decorated = option(decorated)
    return decorated


SALESCONNECT_TOKEN_FILE: Final = SecretFile(
    "salesconnect_token",
    "--salesconnect-token",
    "TASKSYNC_SALESCONNECT_TOKEN",
    "the bridge's Sales Connect service token",
)


def salesconnect_url_option(command: F) -> F:
    """`--salesconnect-url` and the bridge's credential for it, `--salesconnect-token` (or its
    file). The token becomes the credential of every Sales Connect client in the process
    (`bridge.salesconnect.client.configure_token`) and is redacted from the logs; the command
    itself gets `salesconnect_url` only."""

    @functools.wraps(command)
    def with_token(*args: Any, **kwargs: Any) -> Any:
        SALESCONNECT_TOKEN_FILE.resolve(kwargs)
        token: str | None = kwargs.pop("salesconnect_token")
        if token:
            if any(char.isspace() or not char.isprintable() for char in token):
                raise _bad(
                    "must be the token alone: no spaces, line breaks or control characters",
                    "'--salesconnect-token' / TASKSYNC_SALESCONNECT_TOKEN",
                )
            SECRETS.add(token)
            configure_token(token)
        return command(*args, **kwargs)

    decorated = SALESCONNECT_TOKEN_FILE.click_option()(cast(F, with_token))
    decorated = click.option(
        "--salesconnect-token",
        envvar="TASKSYNC_SALESCONNECT_TOKEN",
        show_envvar=True,
        default=None,
        help="The bridge's service token for the Sales Connect API (the service's "
        "--service-token); prefer --salesconnect-token-file.",
    )(decorated)
    return click.option(
        "--salesconnect-url",
        envvar="TASKSYNC_SALESCONNECT_URL",
        show_envvar=True,
        default=DEFAULT_SALESCONNECT_URL,
        show_default=True,
        help="Base URL of the Sales Connect service's JSON API.",
    )(decorated)
