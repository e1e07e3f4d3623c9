"""Connecting to RabbitMQ: parameters from a URL, named connections, TLS, and reconnect backoff.

Every connection carries a `connection_name` so the management UI says which component and
process holds it. Reconnects wait a capped, jittered, growing interval (like kombu's
`ensure_connection`), so a fleet of workers does not stampede a broker that just came back.

TLS (`amqps://`): the server's certificate and host name are always verified. The URL may carry
RabbitMQ's URI query parameters for TLS (https://www.rabbitmq.com/docs/uri-query-parameters),
which the `--amqp-ca-file`, `--amqp-cert-file` and `--amqp-key-file` options add:

* `cacertfile`: PEM file of the CA certificates to trust instead of the system's;
* `certfile`, `keyfile`: a client certificate (chain) and its key, for brokers that ask for one
  (`keyfile` may be left out when `certfile` holds the key too);
* `server_name_indication`: the name the certificate must carry when it is not the URL's host
  (e.g. connecting by IP address).

The files are read at every (re)connection, so renewed certificates are picked up without a
restart. There is no way to turn verification off.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
import pika.exceptions

DEFAULT_HEARTBEAT: Final = 30
BLOCKED_CONNECTION_TIMEOUT: Final = 60.0


def connection_parameters(
    amqp_url: str,
    *,
    name: str,
    heartbeat: int | None = None,
    socket_timeout: float = 10.0,
) -> Any:
    """pika parameters for `amqp_url`, named `name` in the management UI.

    Raises ValueError naming the URL parameter (and file) when the URL or its TLS files are
    not usable."""
    url, tls = split_tls(amqp_url)
    parts = urlsplit(url)
    if parts.username and parts.password is None:
        raise ValueError(
            f"the RabbitMQ URL names the user {parts.username} but no password: give it in the "
            "URL or with --amqp-password-file (TASKSYNC_AMQP_PASSWORD_FILE)"
        )
    params = pika.URLParameters(url)
    if params.ssl_options is not None:
        params.ssl_options = pika.SSLOptions(
            tls_context(tls), server_hostname=tls.server_name or params.host
        )
    params.client_properties = {
        "connection_name": f"{name} ({socket.gethostname()} pid {os.getpid()})",
        "product": "tasksync",
    }
    params.heartbeat = DEFAULT_HEARTBEAT if heartbeat is None else heartbeat
    params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    params.connection_attempts = 1
    params.socket_timeout = socket_timeout
    params.stack_timeout = socket_timeout * 2
    return params


# RabbitMQ's URI query parameters for TLS (the names its Erlang client and CLI tools use).
CA_FILE_PARAMETER: Final = "cacertfile"
CERT_FILE_PARAMETER: Final = "certfile"
KEY_FILE_PARAMETER: Final = "keyfile"
SERVER_NAME_PARAMETER: Final = "server_name_indication"
TLS_PARAMETERS: Final = (
    CA_FILE_PARAMETER,
    CERT_FILE_PARAMETER,
    KEY_FILE_PARAMETER,
    SERVER_NAME_PARAMETER,
)
SCHEMES: Final = ("amqp", "amqps")


@dataclass(frozen=True)
class AmqpTls:
    """How an `amqps://` connection checks the server and proves who it is."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def parameters(self) -> dict[str, str]:
        values = {
            CA_FILE_PARAMETER: self.ca_file,
            CERT_FILE_PARAMETER: self.cert_file,
            KEY_FILE_PARAMETER: self.key_file,
            SERVER_NAME_PARAMETER: self.server_name,
        }
        return {name: value for name, value in values.items() if value}


def split_tls(amqp_url: str) -> tuple[str, AmqpTls]:
    """`amqp_url` without its TLS query parameters (what pika reads), and those settings."""
    parts = urlsplit(amqp_url)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"the RabbitMQ URL must start with amqp:// or amqps://, not {parts.scheme or '(none)'}"
            "://"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    found: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in query:
        if name not in TLS_PARAMETERS:
            rest.append((name, value))
            continue
        if name in found:
            raise ValueError(f"the RabbitMQ URL gives {name} twice")
        if not value:
            raise ValueError(f"the RabbitMQ URL's {name} is empty")
        found[name] = value
    if any(name == "ssl_options" for name, _ in rest):
        # pika's own parameter can turn verification off; tasksync's always verifies.
        raise ValueError(
            "the RabbitMQ URL's ssl_options is not supported: use --amqp-ca-file, "
            "--amqp-cert-file and --amqp-key-file (or the URL's "
            f"{', '.join(TLS_PARAMETERS)})"
        )
    if found and parts.scheme != "amqps":
        raise ValueError(
            f"{', '.join(sorted(found))} only apply to TLS: the RabbitMQ URL must start with "
            "amqps:// (RabbitMQ's TLS port is 5671 by default)"
        )
    tls = AmqpTls(
        ca_file=found.get(CA_FILE_PARAMETER),
        cert_file=found.get(CERT_FILE_PARAMETER),
        key_file=found.get(KEY_FILE_PARAMETER),
        server_name=found.get(SERVER_NAME_PARAMETER),
    )
    if tls.key_file and not tls.cert_file:
        raise ValueError(
            f"the RabbitMQ URL gives {KEY_FILE_PARAMETER} without {CERT_FILE_PARAMETER}"
        )
    return urlunsplit(parts._replace(query=urlencode(rest))), tls


def with_tls(amqp_url: str, tls: AmqpTls) -> str:
    """`amqp_url` with `tls`'s settings added as query parameters (refused when the URL gives
    one of them already with another value, or is not amqps://)."""
    wanted = tls.parameters()
    if not wanted:
        return amqp_url
    parts = urlsplit(amqp_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in query:
        if name in wanted:
            if value != wanted[name]:
                raise ValueError(
                    f"the RabbitMQ URL gives {name}={value} already, not {wanted[name]}"
                )
            del wanted[name]  # the same setting twice, e.g. a child of `tasksync up`
    url = urlunsplit(parts._replace(query=urlencode([*query, *wanted.items()])))
    split_tls(url)  # the same checks as when connecting
    return url


class TlsFileError(ValueError):
    """A TLS file named by a URL parameter that cannot be used."""

    def __init__(self, parameter: str, path: str, reason: str) -> None:
        self.parameter = parameter
        self.path = path
        self.reason = reason
        super().__init__(f"{parameter} {path}: {reason}")


class AmqpTlsError(pika.exceptions.AMQPConnectionError):  # type: ignore[misc] # pika: untyped
    """The TLS handshake with RabbitMQ failed; `str()` says why and what to change.

    The classes below are also `ssl.SSLError`s (pika reports handshake failures by their
    `errno`), and `AMQPConnectionError`s, so every caller that handles a broker it cannot reach
    handles these too, and its message carries the explanation."""

    explanation: str = ""

    def __str__(self) -> str:
        return self.explanation

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.explanation!r})"


class AmqpCertificateError(ssl.SSLCertVerificationError, AmqpTlsError):
    """RabbitMQ's certificate is not trusted, or does not name the host connected to."""

    __str__ = AmqpTlsError.__str__
    __repr__ = AmqpTlsError.__repr__


class AmqpHandshakeError(ssl.SSLError, AmqpTlsError):
    """Any other TLS failure: not a TLS port, no common protocol, a refused client certificate."""

    __str__ = AmqpTlsError.__str__
    __repr__ = AmqpTlsError.__repr__


def _explained(error: ssl.SSLError, server_name: str | None) -> ssl.SSLError:
    explained: AmqpCertificateError | AmqpHandshakeError
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or _reason(error)
        explained = AmqpCertificateError(error.errno, detail)
        explained.verify_code = error.verify_code
        explained.verify_message = error.verify_message
        if "mismatch" in detail:
            explained.explanation = (
                f"TLS: RabbitMQ's certificate does not carry the host name {server_name!r} "
                f"({detail}); connect by a name the certificate carries, or give that name as "
                f"the URL's {SERVER_NAME_PARAMETER}"
            )
        else:
            explained.explanation = (
                f"TLS: RabbitMQ's certificate is not trusted ({detail}); give the CA that "
                "signed it with --amqp-ca-file (TASKSYNC_AMQP_CA_FILE) or the URL's "
                f"{CA_FILE_PARAMETER}"
            )
    else:
        explained = AmqpHandshakeError(error.errno, _reason(error))
        explained.explanation = (
            f"TLS handshake with RabbitMQ failed ({_reason(error)}); check that the port is "
            "RabbitMQ's TLS listener (5671 by default) and, if it asks for a client "
            "certificate, that --amqp-cert-file and --amqp-key-file give one its CA signed"
        )
    explained.reason = error.reason
    explained.library = error.library
    return explained


class _ExplainingSocket(ssl.SSLSocket):
    """Raises handshake failures as the AmqpTlsError classes, with the explanation."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as error:
            raise _explained(error, self.server_hostname) from error


class _AmqpContext(ssl.SSLContext):
    sslsocket_class = _ExplainingSocket


def tls_context(tls: AmqpTls) -> ssl.SSLContext:
    """A client context that verifies the server's certificate chain and host name: against
    `tls.ca_file` alone when given, else the system's CAs; with the client certificate if any.

    Raises TlsFileError naming the URL parameter and file that cannot be used."""
    context = _AmqpContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.ca_file:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (ssl.SSLError, OSError) as exc:
        raise TlsFileError(
            CA_FILE_PARAMETER, str(tls.ca_file), _file_problem(exc, "not PEM CA certificates")
        ) from None
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (ssl.SSLError, OSError) as exc:
            failed = getattr(exc, "filename", None)
            if tls.key_file and failed == tls.key_file:
                raise TlsFileError(
                    KEY_FILE_PARAMETER, tls.key_file, _file_problem(exc, "not a PEM private key")
                ) from None
            problem = (
                "not a PEM client certificate and its private key"
                if tls.key_file is None
                else f"not a PEM client certificate matching the key {tls.key_file}"
            )
            raise TlsFileError(
                CERT_FILE_PARAMETER, tls.cert_file, _file_problem(exc, problem)
            ) from None
    return context


def _file_problem(exc: BaseException, otherwise: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "not a regular file"
    return f"{otherwise} ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


def redact_url(url: str) -> str:
    """`amqp://user:***@host/vhost`: safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter; `reset` after a success."""

    initial: float = 0.5
    cap: float = 30.0
    _failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self._failures)
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0

    def sleep(self, stop: threading.Event) -> bool:
        """Wait the next delay; True when `stop` was set meanwhile."""
        return stop.wait(self.next_delay())
