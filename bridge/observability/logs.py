"""Log lines for people and for log pipelines, and the secrets neither may ever see.

`configure_logging(level, component, log_format)` sends every logger of the process to stderr
as either one JSON object per line (`json`, the default for production commands) or the
familiar `time LEVEL component logger: message` text (`text`, what `tasksync up` shows). A JSON
line carries `time` (UTC, ISO 8601), `level`, `component`, `logger`, `message`, any structured
fields the caller passed as `extra` (the change events carry `message_id`, `direction`,
`outcome`, `duration_ms`, task ids...) and `exception` with the traceback text.

`SECRETS` is the process's list of configured secrets (passwords, tokens, client secrets,
signing keys, and every bearer token sent to Salesforce): both formats replace each of them,
raw or URL-encoded, by `[redacted]` wherever it appears, including in library messages and
tracebacks. This is a second line of defence: the code itself never logs a secret.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, urlsplit

LOG_FORMATS: Final = ("json", "text")
REDACTED: Final = "[redacted]"
# Shorter values are too likely to be ordinary words ("guest") to be replaced everywhere.
MIN_SECRET_LENGTH: Final = 8

_STANDARD_ATTRIBUTES: Final = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)


class SecretRedactor:
    """Configured secrets, replaced by `[redacted]` in any text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str | None) -> None:
        """Remember a secret (and its URL-encoded forms); short or empty values are ignored."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
        with self._lock:
            if forms <= self._secrets:
                return
            self._secrets |= forms
            # Longest first, so a secret containing another is replaced whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def add_url_password(self, url: str | None) -> None:
        """The password inside a URL such as `amqp://user:password@host/vhost`."""
        if not url or "://" not in url:
            return
        try:
            password = urlsplit(url).password
        except ValueError:
            return
        if password:
            self.add(password)
            self.add(unquote(password))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None


SECRETS: Final = SecretRedactor()


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the keys."""

    def __init__(self, component: str, redactor: SecretRedactor = SECRETS) -> None:
        super().__init__()
        self.component = component
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": self.redactor.redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRIBUTES or key.startswith("_") or key in entry:
                continue
            entry[key] = self.redactor.redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self.redactor.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redactor.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redactor.redact(self.formatStack(record.stack_info))
        line = json.dumps(entry, default=str, ensure_ascii=False)
        # Values passed in `extra` as containers were not redacted above.
        return self.redactor.redact(line)


class TextFormatter(logging.Formatter):
    """`time LEVEL component logger: message`, secrets redacted."""

    def __init__(self, component: str, redactor: SecretRedactor = SECRETS) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


def formatter_for(log_format: str, component: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(component)
    if log_format == "text":
        return TextFormatter(component)
    raise ValueError(f"log format: must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")


def configure_logging(
    level: str, component: str, log_format: str = "json", *, quiet_pika: bool = True
) -> None:
    """Every logger of this process to stderr in `log_format`. pika's own connection messages
    are kept to errors that matter unless `level` is debug: the bridge reports an unreachable
    broker itself, once per retry."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, component))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if quiet_pika and level.lower() != "debug":
        logging.getLogger("pika").setLevel(logging.CRITICAL)


def adopt_library_loggers(*names: str) -> None:
    """Send loggers a library configured with handlers of its own (uvicorn does at start)
    through the root handler instead, so they are formatted and redacted like the rest."""
    for name in names:
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True
