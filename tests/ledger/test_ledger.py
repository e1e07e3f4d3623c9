"""The ledger on SQLite and PostgreSQL: compare-and-set semantics, and races between workers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.ledger import (
    BatchClaim,
    DroppedMessage,
    Ledger,
    LinkConflictError,
    ProcessedMessage,
    SourceStamp,
    TaskLink,
)
from schemas.task_change import Origin, TaskStatus

T = TypeVar("T")
NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def race(workers: int, task: Callable[[int], T]) -> list[T]:
    """Run `task(i)` for each worker at the same moment (a barrier), each on its own thread
    and database connection."""
    barrier = threading.Barrier(workers)

    def run(i: int) -> T:
        barrier.wait()
        return task(i)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


def stamp(
    seconds: float, origin: Origin = Origin.SALESCONNECT, mid: int | None = None
) -> SourceStamp:
    message_id = uuid.UUID(int=mid) if mid is not None else uuid.uuid4()
    return SourceStamp(NOW + timedelta(seconds=seconds), origin, message_id)


# -- processed messages and task leases --------------------------------------------------------


def test_a_processed_message_is_reported_and_its_task_released(ledger: Ledger) -> None:
    claim = ledger.begin_batch(holder="a", messages=[("m1", "t1"), ("m2", "t1"), ("m3", "t2")])
    assert claim.leased == {"t1", "t2"} and not claim.already_processed
    ledger.finish_batch(
        holder="a",
        processed=[ProcessedMessage("m1", "t1", "applied", "to-salesforce")],
        release=["t1", "t2"],
    )
    again = ledger.begin_batch(holder="b", messages=[("m1", "t1"), ("m2", "t1")])
    assert again.already_processed == {"m1"}
    assert again.leased == {"t1"}
    assert ledger.is_processed("m1") and not ledger.is_processed("m2")


def test_a_lease_blocks_other_holders_until_released_or_expired(ledger: Ledger) -> None:
    def claim(holder: str, seconds: int) -> BatchClaim:
        at = NOW + timedelta(seconds=seconds)
        return ledger.begin_batch(holder=holder, messages=[(f"m-{holder}", "t1")], now=at)

    ledger.begin_batch(holder="a", messages=[("m1", "t1")], lease_seconds=30, now=NOW)
    blocked = claim("b", 10)
    assert blocked.held_elsewhere == {"t1"} and not blocked.leased
    assert ledger.renew_leases("a", 30, now=NOW + timedelta(seconds=20)) == 1
    assert claim("b", 40).held_elsewhere == {"t1"}
    assert claim("b", 51).leased == {"t1"}
    ledger.finish_batch(holder="a", processed=[], release=["t1"])  # not a's any more: no effect
    assert claim("c", 52).held_elsewhere == {"t1"}
    assert ledger.release_leases("b") == 1


def test_processed_ids_are_forgotten_after_retention(ledger: Ledger) -> None:
    ledger.finish_batch(
        holder="a",
        processed=[ProcessedMessage("old", "t", "applied", "x")],
        release=[],
        now=NOW - timedelta(days=40),
    )
    ledger.finish_batch(
        holder="a", processed=[ProcessedMessage("new", "t", "applied", "x")], release=[], now=NOW
    )
    assert ledger.forget_processed(NOW - timedelta(days=30)) == 1
    assert not ledger.is_processed("old") and ledger.is_processed("new")


def test_racing_consumers_lease_each_task_to_exactly_one(ledger: Ledger) -> None:
    tasks = [f"task-{n}" for n in range(20)]
    claims = race(
        6,
        lambda i: ledger.begin_batch(
            holder=f"worker-{i}", messages=[(f"m-{i}-{t}", t) for t in tasks]
        ),
    )
    for task in tasks:
        assert sum(task in claim.leased for claim in claims) == 1, task


# -- per-field source stamps -------------------------------------------------------------------


def test_a_newer_change_wins_a_field_and_an_older_one_is_stale(ledger: Ledger) -> None:
    first, newer, older = stamp(0), stamp(5), stamp(-5)
    assert ledger.claim_fields("r", first, ["name", "status"]).won == {"name", "status"}
    claim = ledger.claim_fields("r", newer, ["name"])
    assert claim.won == {"name"} and not claim.stale
    claim = ledger.claim_fields("r", older, ["name", "status"])
    assert not claim.won and claim.stale == {"name", "status"}
    assert ledger.field_stamps("r") == {"name": newer, "status": first}


def test_on_equal_stamps_salesforce_wins_then_the_larger_message_id(ledger: Ledger) -> None:
    sc, sf = stamp(0, Origin.SALESCONNECT, 9), stamp(0, Origin.SALESFORCE, 1)
    assert ledger.claim_fields("r", sc, ["name"]).won == {"name"}
    assert ledger.claim_fields("r", sf, ["name"]).won == {"name"}
    assert ledger.claim_fields("r", sc, ["name"]).stale == {"name"}
    higher = stamp(0, Origin.SALESFORCE, 2)
    assert ledger.claim_fields("r", higher, ["name"]).won == {"name"}
    assert ledger.claim_fields("r", sf, ["name"]).stale == {"name"}


def test_the_same_message_claims_its_fields_again_after_a_crash(ledger: Ledger) -> None:
    mine = stamp(0)
    assert ledger.claim_fields("r", mine, ["name"]).won == {"name"}
    assert ledger.claim_fields("r", mine, ["name"]).won == {"name"}
    ledger.claim_fields("r", stamp(1), ["name"])
    assert ledger.claim_fields("r", mine, ["name"]).stale == {"name"}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(Origin),
            st.integers(1, 2**64),
            st.sets(st.sampled_from(["name", "status", "priority", "due_date"]), min_size=1),
        ),
        min_size=1,
        max_size=8,
    ),
    order=st.randoms(use_true_random=False),
)
def test_any_delivery_order_converges_to_the_same_fields(
    ledger: Ledger, changes: list[tuple[int, Origin, int, set[str]]], order: object
) -> None:
    record = f"record-{uuid.uuid4()}"
    stamps = [(stamp(s, origin, mid), fields) for s, origin, mid, fields in changes]
    shuffled = list(stamps)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    for source_stamp, fields in shuffled:
        ledger.claim_fields(record, source_stamp, fields)
    expected: dict[str, SourceStamp] = {}
    for source_stamp, fields in stamps:
        for name in fields:
            best = expected.get(name)
            if best is None or source_stamp.order_key() > best.order_key():
                expected[name] = source_stamp
    assert ledger.field_stamps(record) == expected


def test_racing_claims_on_one_field_end_with_the_newest(ledger: Ledger) -> None:
    stamps = [stamp(n) for n in range(8)]
    claims = race(8, lambda i: ledger.claim_fields("r", stamps[i], ["name"]))
    assert ledger.field_stamps("r")["name"] == stamps[-1]
    assert claims[-1].won == {"name"}


# -- echo fingerprints ----------------------------------------------------------------------


def test_the_bridges_own_writes_are_recognised_as_echoes(ledger: Ledger) -> None:
    ledger.remember_writes(
        Origin.SALESFORCE,
        "00T000000000001AAA",
        {"Subject": "Call", "ActivityDate": date(2026, 11, 22), "Status": TaskStatus.OPEN},
    )
    echoed = ledger.echoed_fields(
        Origin.SALESFORCE,
        "00T000000000001AAA",
        {"Subject": "Call", "ActivityDate": "2026-11-22", "Status": "open"},
    )
    assert echoed == {"Subject", "ActivityDate", "Status"}
    other_system = ledger.echoed_fields(
        Origin.SALESCONNECT, "00T000000000001AAA", {"Subject": "Call"}
    )
    assert other_system == set()


def test_a_field_that_moved_on_is_not_an_echo_when_it_comes_back(ledger: Ledger) -> None:
    ledger.remember_writes(Origin.SALESFORCE, "r", {"Subject": "A"})
    assert ledger.echoed_fields(Origin.SALESFORCE, "r", {"Subject": "B"}) == set()
    assert ledger.echoed_fields(Origin.SALESFORCE, "r", {"Subject": "A"}) == set()


def test_unchanged_fields_compare_with_the_last_known_value_and_forget_nothing(
    ledger: Ledger,
) -> None:
    ledger.remember_writes(Origin.SALESFORCE, "r2", {"Subject": "A", "Status": "Completed"})
    current = {"Subject": "A", "Status": "In Progress", "Priority": "Low"}
    assert ledger.unchanged_fields(Origin.SALESFORCE, "r2", current) == {"Subject"}
    assert ledger.unchanged_fields(Origin.SALESFORCE, "r2", current) == {"Subject"}
    assert ledger.known_fields(Origin.SALESFORCE, "r2") == {"Subject", "Status"}
    assert ledger.unchanged_fields(Origin.SALESCONNECT, "r2", current) == set()


def test_known_versions_only_move_forward(ledger: Ledger) -> None:
    assert ledger.known_version(Origin.SALESFORCE, "r3") is None
    ledger.remember_version(Origin.SALESFORCE, "r3", NOW)
    ledger.remember_version(Origin.SALESFORCE, "r3", NOW - timedelta(seconds=5))
    assert ledger.known_version(Origin.SALESFORCE, "r3") == NOW
    ledger.remember_version(Origin.SALESFORCE, "r3", NOW + timedelta(milliseconds=1))
    assert ledger.known_version(Origin.SALESFORCE, "r3") == NOW + timedelta(milliseconds=1)


def test_forgotten_values_count_as_changed(ledger: Ledger) -> None:
    ledger.remember_writes(Origin.SALESFORCE, "r4", {"Subject": "A", "Status": "Completed"})
    ledger.forget_known(Origin.SALESFORCE, "r4", ["Status"])
    values = {"Subject": "A", "Status": "Completed"}
    assert ledger.unchanged_fields(Origin.SALESFORCE, "r4", values) == {"Subject"}


def test_many_claims_in_one_transaction_see_each_other(ledger: Ledger) -> None:
    older = SourceStamp(NOW, Origin.SALESCONNECT, uuid.uuid4())
    newer = SourceStamp(NOW + timedelta(seconds=1), Origin.SALESFORCE, uuid.uuid4())
    oldest = SourceStamp(NOW - timedelta(seconds=1), Origin.SALESFORCE, uuid.uuid4())
    claims = ledger.claim_fields_many(
        [
            ("task:a", older, ["status", "name"]),
            ("task:a", newer, ["status"]),
            ("task:a", oldest, ["name", "due_date"]),
            ("task:b", oldest, []),
        ]
    )
    assert [(set(c.won), set(c.stale)) for c in claims] == [
        ({"name"}, {"status"}),
        ({"status"}, set()),
        ({"due_date"}, {"name"}),
        (set(), set()),
    ]
    assert ledger.claim_fields("task:a", older, ["name"]).won == {"name"}


# -- id links -------------------------------------------------------------------------------


def test_links_are_idempotent_and_never_double(ledger: Ledger) -> None:
    link = TaskLink("sc-1", "00T000000000001AAA", "user-1", "005000000000001AAA")
    stored = ledger.link(link)
    assert stored.salesconnect_task_id == "sc-1"
    assert stored.salesforce_task_id == "00T000000000001AAA"
    assert ledger.link(link) == stored
    assert ledger.link_for_salesforce("00T000000000001AAA") == stored
    assert ledger.link_for_salesconnect("sc-1") == stored
    with pytest.raises(LinkConflictError, match="already linked"):
        ledger.link(TaskLink("sc-2", "00T000000000001AAA"))
    with pytest.raises(LinkConflictError):
        ledger.link(TaskLink("sc-1", "00T000000000002AAA"))
    assert ledger.unlink("sc-1") and ledger.link_for_salesconnect("sc-1") is None


def test_racing_links_of_one_task_leave_one_link(ledger: Ledger) -> None:
    def link(i: int) -> str:
        try:
            return ledger.link(TaskLink("sc-race", f"00T00000000000{i:02d}AA")).salesforce_task_id
        except LinkConflictError as exc:
            return f"conflict with {exc.existing.salesforce_task_id}"

    results = race(6, link)
    winners = [r for r in results if not r.startswith("conflict")]
    assert len(winners) == 1
    assert all(r.endswith(winners[0]) for r in results)


# -- producer cursors -----------------------------------------------------------------------


def test_cursors_move_only_from_the_value_last_read(ledger: Ledger) -> None:
    assert ledger.cursor("sc-feed") is None
    assert ledger.advance_cursor("sc-feed", expected=None, value="10", position_at=NOW)
    assert not ledger.advance_cursor("sc-feed", expected=None, value="11")
    assert ledger.advance_cursor("sc-feed", expected="10", value="20")
    assert not ledger.advance_cursor("sc-feed", expected="10", value="30")
    cursor = ledger.cursor("sc-feed")
    assert cursor is not None and cursor.value == "20"
    assert [c.name for c in ledger.cursors()] == ["sc-feed"]


def test_racing_producers_advance_a_cursor_once(ledger: Ledger) -> None:
    ledger.advance_cursor("feed", expected=None, value="0")
    moved = race(6, lambda i: ledger.advance_cursor("feed", expected="0", value=f"next-{i}"))
    assert moved.count(True) == 1
    cursor = ledger.cursor("feed")
    assert cursor is not None and cursor.value == f"next-{moved.index(True)}"


# -- audit and size -------------------------------------------------------------------------


def test_drops_are_logged_and_sizes_counted(ledger: Ledger) -> None:
    ledger.record_drop(
        DroppedMessage(
            "m1",
            "duplicate of m0",
            "ops@host",
            NOW,
            "tasksync.salesconnect.changes",
            "upsert.u1",
            "{}",
            '{"a": 1}',
        )
    )
    [dropped] = ledger.dropped()
    assert dropped.reason == "duplicate of m0" and dropped.dropped_at == NOW
    sizes = ledger.sizes()
    assert sizes["dropped_messages"] == 1
    assert set(sizes) >= {"processed_messages", "task_links", "field_stamps", "producer_cursors"}
