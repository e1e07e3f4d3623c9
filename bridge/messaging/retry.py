"""Retry policy: in-call retries for short hiccups, then retry tiers, then parking.

Two layers, one vocabulary (`bridge.errors.classify`):

* `call_with_retries` wraps one remote call (tenacity): transient errors are retried a few
  times with a short jittered exponential backoff; an expired session re-authenticates through
  the given hook and retries at once. Anything else is raised to the caller.
* `RetryPolicy.decide` is what the consumer does with a message whose apply still failed: the
  next retry tier (spending an attempt), a long tier without spending one (rate limits, a
  blocked target), or parking (permanent, malformed, or out of attempts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from bridge.errors import ErrorKind, Failure, classify
from bridge.messaging.topology import RetryTier

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS: Final = 10
DEFAULT_LONG_WAIT_TIER: Final = 2


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 3,
    initial_wait: float = 0.2,
    max_wait: float = 2.0,
    reauthenticate: Callable[[], None] | None = None,
) -> T:
    """Run `call`, retrying transient failures in place; see the module docstring."""
    jitter = wait_exponential_jitter(initial=initial_wait, max=max_wait, jitter=initial_wait)

    def retryable(exc: BaseException) -> bool:
        kind = classify(exc).kind
        return kind is ErrorKind.TRANSIENT or (
            kind is ErrorKind.SESSION_EXPIRED and reauthenticate is not None
        )

    def wait(state: RetryCallState) -> float:
        if _last_kind(state) is ErrorKind.SESSION_EXPIRED:
            return 0.0
        return float(jitter(state))

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if error is None:
            return
        failure = classify(error)
        if failure.kind is ErrorKind.SESSION_EXPIRED and reauthenticate is not None:
            log.info("session expired; re-authenticating before retrying at once")
            reauthenticate()
        else:
            log.info("retrying after %s (attempt %d)", failure.describe(), state.attempt_number)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception(retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(call)


def _last_kind(state: RetryCallState) -> ErrorKind | None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    return classify(error).kind if error is not None else None


@dataclass(frozen=True)
class RetryLater:
    """Send the message through `tier`; it will have failed `attempts` times."""

    tier: RetryTier
    attempts: int


@dataclass(frozen=True)
class RetryNow:
    """Re-authenticate, then hand the message to the handler again at once."""

    attempts: int


@dataclass(frozen=True)
class Park:
    reason: str
    attempts: int


Decision = RetryLater | RetryNow | Park


@dataclass(frozen=True)
class RetryPolicy:
    """How failures of one message are retried.

    `max_attempts`: failures that spend an attempt before the message is parked.
    `long_wait_tier`: index into the tiers for rate limits and a blocked target (clamped);
    by default the third tier (5 minutes with the default tiers)."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    long_wait_tier: int = DEFAULT_LONG_WAIT_TIER

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max attempts: must be at least 1")

    def decide(
        self,
        failure: Failure,
        attempts_so_far: int,
        tiers: Sequence[RetryTier],
        *,
        reauthenticated: bool = False,
    ) -> Decision:
        """What to do after `failure`, given the attempts the message already spent."""
        if failure.kind.parks_at_once:
            return Park(failure.describe(), attempts_so_far + 1)
        if failure.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BLOCKED):
            index = max(0, min(self.long_wait_tier, len(tiers) - 1))
            return RetryLater(tiers[index], attempts_so_far)
        if failure.kind is ErrorKind.SESSION_EXPIRED and not reauthenticated:
            return RetryNow(attempts_so_far)
        attempts = attempts_so_far + 1
        if attempts >= self.max_attempts:
            return Park(f"gave up after {attempts} attempts: {failure.describe()}", attempts)
        return RetryLater(tiers[min(attempts - 1, len(tiers) - 1)], attempts)
