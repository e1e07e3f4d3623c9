"""The token buckets behind the ingress's rate limit, on a clock the test moves."""

from __future__ import annotations

import pytest

from bridge.ingress.ratelimit import LOG_EVERY_SECONDS, RateLimit, TokenBuckets
from bridge.ingress.service import address_source


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(RateLimit(rate=2, burst=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    refused = buckets.take("a")
    assert refused is not None and refused.retry_after == 1
    assert buckets.take("b") is None  # every key has its own bucket
    clock.now += 0.5  # one token back
    assert buckets.take("a") is None
    assert buckets.take("a") is not None
    clock.now += 60  # never more than the burst
    assert [buckets.take("a") is None for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_whole_seconds_until_a_token_and_refusals_take_none() -> None:
    clock = Clock()
    buckets = TokenBuckets(RateLimit(rate=0.1, burst=1), clock=clock)
    assert buckets.take("a") is None
    first = buckets.take("a")
    assert first is not None and first.retry_after == 10
    clock.now += 4
    again = buckets.take("a")
    assert again is not None and again.retry_after == 6
    clock.now += 6
    assert buckets.take("a") is None


def test_refusals_are_reported_at_most_every_few_seconds_with_their_count() -> None:
    clock = Clock()
    buckets = TokenBuckets(RateLimit(rate=1, burst=1), clock=clock)
    buckets.take("a")
    reports = []
    for _ in range(5):
        refusal = buckets.take("a")
        assert refusal is not None
        reports.append((refusal.log_now, refusal.refused_since_logged))
    assert reports[0] == (True, 1)
    assert all(not log_now for log_now, _ in reports[1:])
    clock.now += LOG_EVERY_SECONDS
    buckets.take("a")  # a token came back meanwhile
    refusal = buckets.take("a")
    assert refusal is not None and (refusal.log_now, refusal.refused_since_logged) == (True, 5)


def test_zero_turns_the_limit_off_and_the_sources_kept_are_bounded() -> None:
    off = TokenBuckets(RateLimit(rate=0, burst=1))
    assert all(off.take("a") is None for _ in range(1000))
    clock = Clock()
    buckets = TokenBuckets(RateLimit(rate=1, burst=1), clock=clock, max_keys=3)
    for key in "abcde":
        buckets.take(key)
    assert len(buckets) == 3
    assert buckets.take("e") is not None  # the most recent are kept


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (float("nan"), 1), (float("inf"), 1), (1, 0)])
def test_a_nonsense_limit_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=rate, burst=burst)


def test_ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_source("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_source("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_source("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_source("192.0.2.7") == "192.0.2.7"
    assert address_source(None) == "unknown"
