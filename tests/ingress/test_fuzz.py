"""Fuzzing a running `tasksync ingress` over HTTPS: malformed JSON, wrong types, missing and
extra keys, oversized bodies, missing, bad and mis-signed signatures, stale and future
timestamps, wrong methods and paths. Every answer is a 4xx (never a 5xx, never a 2xx), the
process keeps serving without a traceback, and nothing reaches RabbitMQ: a queue bound to
every source exchange stays empty.

The signature cases carry a valid notification of a real Task of a synced user, so a check
that let one through would publish its change. The rate limit is off here (every request
comes from this process's address); test_rate_limit.py tests it.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.notification import (
    DEFAULT_TIMESTAMP_WINDOW_SECONDS,
    MAPPED_TASK_FIELDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    dump_notification_batch,
    sign_notification,
)
from tests.ingress.support import SECRETS, IngressWorld

MAX_BODY_BYTES: Final = 8192
WINDOW: Final = DEFAULT_TIMESTAMP_WINDOW_SECONDS
FUZZ_SETTINGS: Final = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def ingress_options() -> list[str]:
    return ["--rate-limit", "0", "--max-body-bytes", str(MAX_BODY_BYTES)]


class Signing(enum.Enum):
    RIGHT = "right"
    ROTATED = "rotated"
    WRONG_SECRET = "wrong secret"
    OTHER_BODY = "signed another body"
    OTHER_STAMP = "signed another timestamp"
    OTHER_SCHEME = "v2= instead of v1="
    UPPER_HEX = "upper-case hex"
    TRUNCATED = "one digit short"
    GARBAGE = "garbage"
    MISSING = "no signature header"


@dataclass(frozen=True)
class Case:
    """One request; its timestamp and signature are made when it is sent."""

    what: str
    body: bytes
    expect: frozenset[int]
    signing: Signing = Signing.RIGHT
    stamp_offset: int = 0
    stamp_text: str | None = None  # sent as is instead of now + stamp_offset
    omit_stamp: bool = False
    garbage: str = ""
    method: str = "POST"
    path: str = "/notifications"


def headers_for(case: Case, now: int) -> dict[str, str]:
    stamp_text = case.stamp_text if case.stamp_text is not None else str(now + case.stamp_offset)
    stamp = int(stamp_text) if stamp_text.isdigit() and len(stamp_text) < 15 else now
    body = case.body
    signature = {
        Signing.RIGHT: lambda: sign_notification(SECRETS[0], stamp, body),
        Signing.ROTATED: lambda: sign_notification(SECRETS[1], stamp, body),
        Signing.WRONG_SECRET: lambda: sign_notification("not-the-secret", stamp, body),
        Signing.OTHER_BODY: lambda: sign_notification(SECRETS[0], stamp, body + b" "),
        Signing.OTHER_STAMP: lambda: sign_notification(SECRETS[0], stamp + 1, body),
        Signing.OTHER_SCHEME: lambda: "v2=" + sign_notification(SECRETS[0], stamp, body)[3:],
        Signing.UPPER_HEX: lambda: "v1=" + sign_notification(SECRETS[0], stamp, body)[3:].upper(),
        Signing.TRUNCATED: lambda: sign_notification(SECRETS[0], stamp, body)[:-1],
        Signing.GARBAGE: lambda: case.garbage,
        Signing.MISSING: lambda: "",
    }[case.signing]()
    headers = {"Content-Type": "application/json"}
    if not case.omit_stamp:
        headers[TIMESTAMP_HEADER] = stamp_text
    if case.signing is not Signing.MISSING:
        headers[SIGNATURE_HEADER] = signature
    return headers


# -- what the bodies are made of -----------------------------------------------------------

header_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
not_a_string = json_values.filter(lambda value: not isinstance(value, str))
not_a_list = json_values.filter(lambda value: not isinstance(value, list))
not_an_object = json_values.filter(lambda value: not isinstance(value, dict))
not_one = json_values.filter(lambda value: type(value) is not int or value != 1)
not_an_id = st.text(max_size=30).filter(lambda text: not (len(text) == 18 and text.isalnum()))
not_a_stamp = st.text(max_size=40) | st.sampled_from(
    [
        "2026-01-01",
        "2026-01-01T10:00:00",
        "2026-01-01T10:00:00.0000Z",
        "2026-02-30T10:00:00.000Z",
        "2026-01-01T25:00:00.000Z",
        "2026-01-01 10:00:00Z",
        "1767225600",
    ]
)
not_an_op = st.text(max_size=12).filter(
    lambda text: text not in ("insert", "update", "delete", "undelete")
)
not_a_field = st.text(max_size=20).filter(lambda text: text not in MAPPED_TASK_FIELDS)

TOP_KEYS: Final = ("schema_version", "org_id", "sent_at", "notifications")
ITEM_KEYS: Final = ("task_id", "op", "owner_id", "actor_id", "system_modstamp", "changed_fields")
WRONG_VALUES: Final[dict[str, st.SearchStrategy[Any]]] = {
    "schema_version": not_one,
    "org_id": not_a_string | not_an_id,
    "sent_at": not_a_string | not_a_stamp,
    "notifications": not_a_list | st.just([]) | st.lists(not_an_object, min_size=1, max_size=3),
    "task_id": not_a_string | not_an_id,
    "op": not_a_string | not_an_op,
    "owner_id": not_a_string | not_an_id,
    "actor_id": not_a_string | not_an_id,
    "system_modstamp": not_a_string | not_a_stamp,
    "changed_fields": not_a_list
    | st.lists(not_a_string | not_a_field, min_size=1, max_size=3)
    | st.just(list(MAPPED_TASK_FIELDS) * 2),
}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def mutated_batches(valid: dict[str, Any]) -> st.SearchStrategy[Case]:
    """A valid batch with one thing wrong: a key missing, a key too many, a value of the wrong
    type or out of its rules, at the top or in a notification."""

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        batch = json.loads(json.dumps(valid))
        item = batch["notifications"][0]
        how = draw(st.sampled_from(["missing", "extra", "wrong"]))
        where_top = draw(st.booleans())
        target, keys = (batch, TOP_KEYS) if where_top else (item, ITEM_KEYS)
        if how == "missing":
            key = draw(st.sampled_from(keys))
            del target[key]
        elif how == "extra":
            key = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in keys))
            target[key] = draw(json_values)
        else:
            key = draw(st.sampled_from(keys))
            target[key] = draw(WRONG_VALUES[key])
        return Case(f"{how} {key}", dumps(batch), frozenset({400, 413}))

    return build()


def garbage_bodies() -> st.SearchStrategy[Case]:
    """Signed bodies that are not a batch at all."""
    raw = st.binary(max_size=600).map(lambda body: Case("bytes", body, frozenset({400})))
    values = json_values.map(lambda value: Case("json value", dumps(value), frozenset({400, 413})))
    nested = st.integers(1_100, 4_000).map(
        lambda depth: Case(f"nested {depth} deep", b"[" * depth + b"]" * depth, frozenset({400}))
    )
    long_number = st.integers(4_400, 8_000).map(
        lambda digits: Case(
            f"{digits}-digit number", b'{"schema_version":' + b"7" * digits + b"}", frozenset({400})
        )
    )
    broken = st.sampled_from(
        [
            b"",
            b"{",
            b'{"schema_version":1,}',
            b"\xef\xbb\xbf{}",
            b'{"schema_version":NaN}',
            b'{"schema_version":1}' * 2,
            "{}".encode("utf-16"),
            b"\xff\xfe\x00",
            b"null",
        ]
    ).map(lambda body: Case("broken JSON", body, frozenset({400})))
    return st.one_of(raw, values, nested, long_number, broken)


def oversized() -> st.SearchStrategy[Case]:
    return st.integers(MAX_BODY_BYTES + 1, 3 * MAX_BODY_BYTES).map(
        lambda size: Case(f"{size} bytes", b'{"pad":"' + b"x" * size + b'"}', frozenset({413}))
    )


def bad_signatures(body: bytes) -> st.SearchStrategy[Case]:
    """The valid notification of a real Task, signed or stamped wrongly: 401 every time."""
    refused = frozenset({401})
    wrong_signing = st.sampled_from(
        [s for s in Signing if s not in (Signing.RIGHT, Signing.ROTATED, Signing.GARBAGE)]
    ).map(lambda signing: Case(signing.value, body, refused, signing=signing))
    garbage = header_text.map(
        lambda text: Case("garbage signature", body, refused, signing=Signing.GARBAGE, garbage=text)
    )
    stale_or_future = st.sampled_from([Signing.RIGHT, Signing.ROTATED]).flatmap(
        lambda signing: st.integers(WINDOW + 5, 10**9).flatmap(
            lambda distance: st.sampled_from([-distance, distance]).map(
                lambda offset: Case(
                    f"{'stale' if offset < 0 else 'future'} by {distance} s",
                    body,
                    refused,
                    signing=signing,
                    stamp_offset=offset,
                )
            )
        )
    )
    bad_stamp = header_text.filter(lambda text: not text.isdigit()).map(
        lambda text: Case("timestamp not a number", body, refused, stamp_text=text)
    ) | st.sampled_from(["0", "1" * 13, "99999999999999999999"]).map(
        lambda text: Case(f"timestamp {text}", body, refused, stamp_text=text)
    )
    no_stamp = st.just(Case("no timestamp header", body, refused, omit_stamp=True))
    return st.one_of(wrong_signing, garbage, stale_or_future, bad_stamp, no_stamp)


def wrong_requests(body: bytes) -> st.SearchStrategy[Case]:
    method = st.sampled_from(["GET", "PUT", "PATCH", "DELETE"]).map(
        lambda verb: Case(f"{verb} /notifications", body, frozenset({405}), method=verb)
    )
    path = st.sampled_from(["/", "/notification", "/notifications/x", "/admin", "/healthz/x"]).map(
        lambda where: Case(f"POST {where}", body, frozenset({404, 405}), path=where)
    )
    return method | path


# -- the tests -------------------------------------------------------------------------------


@dataclass
class Sender:
    world: IngressWorld
    session: requests.Session
    answers: dict[int, int]

    def send(self, case: Case) -> requests.Response:
        now = int(time.time())
        answer = self.session.request(
            case.method,
            self.world.info["base_url"] + case.path,
            data=case.body,
            headers=headers_for(case, now),
            timeout=30,
        )
        self.answers[answer.status_code] = self.answers.get(answer.status_code, 0) + 1
        return answer

    def check(self, case: Case) -> None:
        answer = self.send(case)
        assert 400 <= answer.status_code < 500, (case.what, answer.status_code, answer.text)
        assert answer.status_code in case.expect, (case.what, answer.status_code, answer.text)
        if case.path == "/notifications" and case.method == "POST":
            error = answer.json()["error"]
            assert error["code"] and error["message"], answer.text


@pytest.fixture
def sender(world: IngressWorld) -> Sender:
    return Sender(world, world.http(), {})


def a_real_task_notification(world: IngressWorld) -> bytes:
    task = str(world.rep.Task.create({"Subject": "Fuzzed", "OwnerId": world.rep_user.id})["id"])
    return world.notification(task)


def assert_nothing_published_and_still_serving(world: IngressWorld, sender: Sender) -> None:
    assert world.watch.count() == 0, "a refused request published a message"
    assert world.published.collect() == []
    assert world.ingress.process is not None and world.ingress.process.poll() is None
    health = world.http().get(world.info["base_url"] + "/healthz", timeout=10)
    assert health.status_code == 200
    assert "Traceback" not in world.ingress.log()
    assert not [status for status in sender.answers if status >= 500], sender.answers


def run_fuzz(strategy: st.SearchStrategy[Case], check: Callable[[Case], None]) -> None:
    @FUZZ_SETTINGS
    @given(case=strategy)
    def fuzz(case: Case) -> None:
        check(case)

    fuzz()


def test_malformed_signed_bodies_are_refused_with_400_and_publish_nothing(
    world: IngressWorld, sender: Sender
) -> None:
    valid = dump_notification_batch(world.batch("00T000000000001AAA"))
    run_fuzz(st.one_of(mutated_batches(valid), garbage_bodies(), oversized()), sender.check)
    assert_nothing_published_and_still_serving(world, sender)


def test_bad_signatures_and_timestamps_are_refused_with_401_and_publish_nothing(
    world: IngressWorld, sender: Sender
) -> None:
    body = a_real_task_notification(world)
    run_fuzz(st.one_of(bad_signatures(body), wrong_requests(body)), sender.check)
    assert_nothing_published_and_still_serving(world, sender)
    # The same notification, signed right, is accepted and published: the cases above were
    # refused for their signature alone.
    accepted = sender.send(Case("signed right", body, frozenset({200})))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["published"] == 1
    assert world.watch.count() == 1


@pytest.mark.parametrize(
    "case",
    [
        Case("nested 3000 deep", b"[" * 3000 + b"]" * 3000, frozenset({400})),
        Case("object nested 1200 deep", b'{"a":' * 1200 + b"1" + b"}" * 1200, frozenset({400})),
        Case("5000-digit number", b'{"schema_version":' + b"1" * 5000 + b"}", frozenset({400})),
        Case("NaN", b'{"schema_version":NaN}', frozenset({400})),
        Case("UTF-16", "{}".encode("utf-16"), frozenset({400})),
    ],
    ids=lambda case: case.what,
)
def test_bodies_json_itself_chokes_on_are_a_clean_400(
    world: IngressWorld, sender: Sender, case: Case
) -> None:
    answer = sender.send(case)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["fields"], answer.text
    assert_nothing_published_and_still_serving(world, sender)
