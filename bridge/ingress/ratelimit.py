"""Rate limits per source for the ingress: a token bucket per client address, and one per
Salesforce org once a batch's signature checked out.

A bucket holds up to `burst` tokens and gains `rate` tokens a second; each request takes one,
and a request that finds the bucket empty is answered 429 with `Retry-After` (the whole
seconds until a token is back) and does nothing else: no signature check, no Salesforce read,
no publish. A refused request takes no token, so a client that waits as told gets through.

The address bucket is taken before the body is read, so a flood of unsigned or malformed
requests from one address is refused cheaply; the org bucket bounds what one org's signed
notifications can cost (Salesforce reads, publishes) however many addresses they come from.
The defaults (`DEFAULT_RATE_LIMIT` a second, bursts of `DEFAULT_RATE_BURST`) are far above what
the Salesforce-side package sends: one POST per batch of up to 200 changes, each delivery job
posting its batches one after another.

Buckets live in this process's memory (several ingress processes each allow the rate); at most
`MAX_TRACKED_SOURCES` are kept, the least recently seen dropped first (a dropped bucket is a
full one, which is what an idle source has anyway).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("bridge.ingress.ratelimit")

DEFAULT_RATE_LIMIT: Final = 50.0
DEFAULT_RATE_BURST: Final = 200
MAX_TRACKED_SOURCES: Final = 10_000
LOG_EVERY_SECONDS: Final = 10.0


@dataclass(frozen=True)
class RateLimit:
    """`rate` requests a second on average, `burst` at once; a rate of 0 turns it off."""

    rate: float = DEFAULT_RATE_LIMIT
    burst: int = DEFAULT_RATE_BURST

    def __post_init__(self) -> None:
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate limit: must be 0 (off) or a positive number, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"rate burst: must be at least 1, not {self.burst}")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def describe(self) -> str:
        return f"{self.rate:g} requests a second, bursts of {self.burst}"


@dataclass
class _Bucket:
    tokens: float
    updated: float
    refused: int = 0  # refusals not yet logged
    logged: float = -math.inf


@dataclass(frozen=True)
class Refusal:
    """A request over the limit: when to come back, and whether to log it now."""

    retry_after: int
    log_now: bool
    refused_since_logged: int


class TokenBuckets:
    """One token bucket per key (thread-safe)."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_SOURCES,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> Refusal | None:
        """Take a token for `key`: None when there was one, else a `Refusal`."""
        if not self.limit.enabled:
            return None
        now = self._clock()
        rate, burst = self.limit.rate, float(self.limit.burst)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(tokens=burst, updated=now)
                self._buckets[key] = bucket
                while len(self._buckets) > self._max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.updated) * rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            bucket.refused += 1
            log_now = now - bucket.logged >= LOG_EVERY_SECONDS
            refused = bucket.refused
            if log_now:
                bucket.logged = now
                bucket.refused = 0
            return Refusal(
                retry_after=max(1, math.ceil((1.0 - bucket.tokens) / rate)),
                log_now=log_now,
                refused_since_logged=refused,
            )
