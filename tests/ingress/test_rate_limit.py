"""The ingress's rate limit per source: a burst beyond it from one client address, or from
one org across addresses, is answered 429 with Retry-After and publishes nothing, while other
sources and traffic within the limit pass; the default limit lets a fast sender through.

Client addresses are told apart with X-Forwarded-For, which the ingress (uvicorn) believes from
the local host only, as it would from a reverse proxy there.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bridge.ingress.ratelimit import DEFAULT_RATE_BURST
from tests.ingress.support import IngressWorld
from tests.producers.support import fake_salesforce_user_id
from tests.support.waiting import wait_for

RATE, BURST = 2, 5
UNSYNCED_TASK = "00T0000000000AAAAA"


@pytest.fixture
def ingress_options() -> list[str]:
    return ["--rate-limit", str(RATE), "--rate-burst", str(BURST), "--metrics-port", "0"]


def unsynced_notification(world: IngressWorld) -> bytes:
    """A valid, signed-able batch about a Task of a user who is not synced: accepted (200)
    without reading Salesforce or publishing, so bursts of it are cheap."""
    return world.notification(UNSYNCED_TASK, owner_id=fake_salesforce_user_id())


def assert_throttled(answer: requests.Response, scope: str) -> int:
    assert answer.status_code == 429, answer.text
    retry_after = answer.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 1 + 1 / RATE, retry_after
    error = answer.json()["error"]
    assert error["code"] == "rate_limited"
    assert f"from this {scope}" in error["message"] and "retry after" in error["message"]
    return int(retry_after)


def metric(world: IngressWorld, name: str, **labels: str) -> float:
    text = requests.get(f"{world.info['metrics_url']}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_a_burst_from_one_address_gets_429_with_retry_after_and_others_pass(
    world: IngressWorld,
) -> None:
    body = unsynced_notification(world)
    within = [world.post(body, forwarded_for="203.0.113.10") for _ in range(BURST)]
    assert [answer.status_code for answer in within] == [200] * BURST, within[-1].text

    beyond = [world.post(body, forwarded_for="203.0.113.10") for _ in range(3)]
    throttled = [answer for answer in beyond if answer.status_code == 429]
    assert throttled, [answer.status_code for answer in beyond]
    for answer in throttled:
        assert_throttled(answer, "address")

    # Another address has a bucket of its own (this one's is checked first, before the body
    # is read, so its request reaches the signature check).
    assert world.post(body, secret="wrong", forwarded_for="203.0.113.20").status_code == 401

    # Waiting as told gets through again (a refused request takes no token).
    def passed() -> bool:
        return world.post(body, forwarded_for="203.0.113.10").status_code == 200

    wait_for(passed, timeout=10, interval=0.1, what="the address to be let through again")

    assert world.watch.count() == 0
    assert metric(world, "tasksync_ingress_rate_limited_total", scope="address") >= len(throttled)
    assert metric(world, "tasksync_ingress_requests_total", status="429") >= len(throttled)
    log = world.ingress.log()
    assert "rate limited address 203.0.113.10" in log
    assert "Traceback" not in log


def test_an_unsigned_flood_is_refused_before_its_signature_is_checked(
    world: IngressWorld,
) -> None:
    answers = [world.post(b"not even json", secret="forged") for _ in range(BURST + 5)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:BURST] == [401] * BURST
    assert 429 in statuses[BURST:], statuses
    assert set(statuses) == {401, 429}
    log = world.ingress.log()
    assert log.count("refused a notification") == BURST  # the rest never reached the check
    assert "rate limited address 127.0.0.1" in log


def test_one_orgs_signed_batches_are_limited_across_addresses(world: IngressWorld) -> None:
    body = unsynced_notification(world)
    answers = [world.post(body, forwarded_for=f"198.51.100.{n}") for n in range(1, BURST + 4)]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:BURST] == [200] * BURST, answers[0].text
    throttled = [answer for answer in answers[BURST:] if answer.status_code == 429]
    assert throttled, statuses
    for answer in throttled:
        assert_throttled(answer, "org")
    assert metric(world, "tasksync_ingress_rate_limited_total", scope="org") >= len(throttled)
    assert f"rate limited org {world.emulator.org_id}" in world.ingress.log()


def test_a_package_retrying_after_429_gets_its_change_published(world: IngressWorld) -> None:
    flood = [world.post(b"{}", secret="forged") for _ in range(BURST + 1)]
    assert flood[-1].status_code == 429
    task = str(world.rep.Task.create({"Subject": "Call Dee", "OwnerId": world.rep_user.id})["id"])
    body = world.notification(task)
    first = world.post(body)
    assert first.status_code == 429 and world.watch.count() == 0

    def let_through() -> requests.Response | None:
        sent = world.post(body)
        return sent if sent.status_code != 429 else None

    answer = wait_for(let_through, timeout=10, interval=0.1, what="the retry to be let through")
    assert answer.status_code == 200 and answer.json()["published"] == 1, answer.text
    assert world.watch.count() == 1


@pytest.mark.parametrize("ingress_options", [[]], ids=["default limit"])
def test_the_default_limit_lets_a_fast_sender_through(world: IngressWorld) -> None:
    """Faster than the package ever sends: one batch after another, no pause."""
    body = unsynced_notification(world)
    statuses = [world.post(body).status_code for _ in range(DEFAULT_RATE_BURST // 2)]
    assert set(statuses) == {200}
