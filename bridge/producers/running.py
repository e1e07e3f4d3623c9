"""What every long-running producer process shares: stopping on SIGTERM, publishing until
RabbitMQ confirmed, and failures reported as one plain line, then retried.

Stopping: the signal handler sets an event that every wait checks. A producer blocked in a
long-poll (the Sales Connect feed waits up to `--wait` seconds) would notice it only when the
poll returns, so while, and only while, the process is idle inside `control.interruptible()`,
the handler raises `Stopping` at once; during a publish or a ledger write it never does, so
nothing is cut in half.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Final, TypeVar
from urllib.parse import urlsplit

import requests

from bridge.errors import classify
from bridge.messaging import Publisher, PublishError
from bridge.messaging.connection import Backoff
from bridge.observability.events import record_published
from schemas.task_change import TaskChange

log = logging.getLogger(__name__)
T = TypeVar("T")

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class Stopping(BaseException):
    """The process was asked to stop while it waited. A `BaseException`, like
    `KeyboardInterrupt`, so no `except Exception` in a library swallows it."""


class ProcessControl:
    """A stop flag set by SIGTERM/SIGINT (or `stop()`), and waits that end when it is set."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._interruptible = False

    def install_signal_handlers(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self.stopped.set()
        if self._interruptible:
            self._interruptible = False
            raise Stopping

    def stop(self) -> None:
        self.stopped.set()

    @property
    def should_stop(self) -> bool:
        return self.stopped.is_set()

    def check(self) -> None:
        if self.stopped.is_set():
            raise Stopping

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`; raise `Stopping` as soon as a stop is asked for."""
        if self.stopped.wait(max(0.0, seconds)):
            raise Stopping

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Mark an idle wait (a long-poll) that a stop signal may abandon midway."""
        self.check()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False
        self.check()


_OS_REASON: Final = re.compile(r"\[Errno -?\d+\] ([^\"')(]+)")


def describe_failure(exc: BaseException) -> str:
    """One line naming the system, the code and the reason; never a traceback."""
    if isinstance(exc, requests.ConnectionError | requests.Timeout) and exc.request is not None:
        parts = urlsplit(str(exc.request.url))
        found = _OS_REASON.search(str(exc))
        reason = found.group(1).strip().lower() if found else type(exc).__name__
        return f"cannot reach {parts.scheme}://{parts.netloc}: {reason}"
    return classify(exc).describe()


def publish_until_confirmed(
    publisher: Publisher,
    changes: Sequence[TaskChange],
    control: ProcessControl,
    *,
    backoff: Backoff | None = None,
) -> None:
    """Publish all `changes`, retrying the whole lot until RabbitMQ confirmed every one.

    Publishing again what was already confirmed is harmless: message ids are derived from the
    source, and the workers' ledger drops duplicates."""
    if not changes:
        return
    waits = backoff or Backoff(initial=0.5, cap=30.0)
    while True:
        control.check()
        started = time.monotonic()
        try:
            publisher.publish_many(changes)
            record_published(changes, time.monotonic() - started)
            return
        except PublishError as exc:
            delay = waits.next_delay()
            log.warning(
                "RabbitMQ did not confirm %d of %d messages (%s); publishing them again in %.1f s",
                len(exc.failures),
                len(changes),
                next(iter(exc.failures.values()), "unknown reason"),
                delay,
            )
            control.sleep(delay)


def retry_until_done(what: str, attempt: Callable[[], T], control: ProcessControl) -> T:
    """Run `attempt` until it succeeds, logging each failure in one line and waiting a
    growing, capped interval in between; `Stopping` when a stop is asked for meanwhile."""
    backoff = Backoff(initial=1.0, cap=30.0)
    while True:
        control.check()
        try:
            return attempt()
        except Exception as exc:
            delay = backoff.next_delay()
            log.warning("%s: %s; trying again in %.1f s", what, describe_failure(exc), delay)
            control.sleep(delay)
