"""The pure comparison of `tasksync verify`: what is a difference, what the mapping explains."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mapping import (
    PRIORITY_TO_SALESFORCE,
    STATUS_TO_SALESFORCE,
    SUBJECT_MAX_LENGTH,
    render_subject,
)
from bridge.salesconnect.client import SalesConnectTask
from bridge.salesforce.tasks import SalesforceTask
from bridge.verify import (
    FindingKind,
    Snapshot,
    SyncedUser,
    VerifyReport,
    compare,
    salesforce_id_key,
)
from schemas.task_change import TaskPriority, TaskStatus
from tests.strategies import dates, texts

ENABLED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANN = SyncedUser("usr_ann", "005000000000001AAA", ENABLED, "{{activity_subject}}")
BOB = SyncedUser("usr_bob", "005000000000002AAA", ENABLED, "{{activity_subject}}")
HOUR = timedelta(hours=1)


def sc_task(
    task_id: str = "tsk_1",
    *,
    user: SyncedUser = ANN,
    name: str = "Call Ann",
    status: str = "open",
    priority: str = "normal",
    due_date: str | None = "2026-12-01",
    details: str = "",
    salesforce_task_id: str | None = None,
    created_at: datetime = ENABLED + HOUR,
    deleted: bool = False,
) -> SalesConnectTask:
    return SalesConnectTask(
        id=task_id,
        user_id=user.user_id,
        name=name,
        status=status,
        priority=priority,
        due_date=due_date,
        details=details,
        salesforce_task_id=salesforce_task_id,
        version=1,
        created_at=created_at,
        updated_at=created_at,
        deleted_at=created_at + HOUR if deleted else None,
    )


def sf_task(
    task_id: str = "00T000000000001AAA",
    *,
    owner: SyncedUser | str = ANN,
    subject: str | None = "Call Ann",
    status: str = "Not Started",
    priority: str = "Normal",
    activity_date: str | None = "2026-12-01",
    description: str | None = None,
    subtype: str = "Task",
    is_recurrence: bool = False,
    deleted: bool = False,
    sales_connect_id: str | None = None,
    modified: datetime = ENABLED + 2 * HOUR,
) -> SalesforceTask:
    return SalesforceTask(
        id=task_id,
        owner_id=owner.salesforce_user_id if isinstance(owner, SyncedUser) else owner,
        subject=subject,
        status=status,
        priority=priority,
        activity_date=activity_date,
        description=description,
        task_subtype=subtype,
        is_recurrence=is_recurrence,
        is_deleted=deleted,
        sales_connect_id=sales_connect_id,
        created_by_id=None,
        last_modified_by_id=None,
        last_modified_date=modified,
        system_modstamp=modified,
    )


def run(
    *tasks: SalesConnectTask | SalesforceTask,
    users: tuple[SyncedUser, ...] = (ANN,),
    strict_subjects: bool = False,
) -> VerifyReport:
    return compare(
        Snapshot(
            users=users,
            salesconnect_tasks=tuple(t for t in tasks if isinstance(t, SalesConnectTask)),
            salesforce_tasks=tuple(t for t in tasks if isinstance(t, SalesforceTask)),
        ),
        strict_subjects=strict_subjects,
    )


def kinds(report: VerifyReport) -> list[FindingKind]:
    return [finding.kind for finding in report.differences]


def explained(report: VerifyReport) -> list[FindingKind]:
    return [finding.kind for finding in report.explained]


# -- pairs that agree ------------------------------------------------------------------------


@pytest.mark.parametrize("linked_by", ["salesconnect_link", "external_id", "both"])
def test_a_pair_that_agrees_has_no_finding_however_it_is_linked(linked_by: str) -> None:
    sf = sf_task(sales_connect_id="tsk_1" if linked_by != "salesconnect_link" else None)
    sc = sc_task(salesforce_task_id=sf.id if linked_by != "external_id" else None)
    report = run(sc, sf)
    assert report.ok
    assert report.explained == ()
    assert report.users[0].pairs == 1


def test_empty_details_equal_a_null_description_and_null_dates_agree() -> None:
    report = run(
        sc_task(details="", due_date=None, salesforce_task_id="00T000000000001AAA"),
        sf_task(description=None, activity_date=None),
    )
    assert report.ok


def test_a_fifteen_character_link_pairs_with_the_eighteen_character_id() -> None:
    sf = sf_task("00T00000000000aBCD")
    report = run(sc_task(salesforce_task_id=salesforce_id_key(sf.id)), sf)
    assert report.ok
    assert report.users[0].pairs == 1


def test_ids_differing_only_in_case_are_different_salesforce_tasks() -> None:
    report = run(sc_task(salesforce_task_id="00T00000000000ABCD"), sf_task("00T00000000000abcd"))
    assert set(kinds(report)) == {
        FindingKind.LINK_TO_MISSING_SALESFORCE_TASK,
        FindingKind.MISSING_IN_SALESCONNECT,
    }


# -- field mismatches ------------------------------------------------------------------------

LINK = "00T000000000001AAA"


@pytest.mark.parametrize(
    ("sc_changes", "sf_changes", "field"),
    [
        ({"status": "completed"}, {}, "status"),
        ({}, {"status": "Completed"}, "status"),
        ({"priority": "high"}, {}, "priority"),
        ({}, {"priority": "High"}, "priority"),
        ({"due_date": "2026-12-02"}, {}, "due_date"),
        ({"due_date": None}, {}, "due_date"),
        ({}, {"activity_date": None}, "due_date"),
        ({"details": "Bring the contract"}, {}, "details"),
        ({}, {"description": "Bring the contract"}, "details"),
        ({"details": "a"}, {"description": "A"}, "details"),
    ],
)
def test_each_mapped_field_that_differs_is_one_difference_naming_it(
    sc_changes: dict[str, object], sf_changes: dict[str, object], field: str
) -> None:
    report = run(
        sc_task(salesforce_task_id=LINK, **sc_changes),  # type: ignore[arg-type]
        sf_task(**sf_changes),  # type: ignore[arg-type]
    )
    assert kinds(report) == [FindingKind.FIELD_MISMATCH]
    finding = report.differences[0]
    assert finding.field == field
    assert finding.salesconnect_task_ids == ("tsk_1",)
    assert finding.salesforce_task_ids == (LINK,)
    assert field in finding.message


def test_a_status_mismatch_says_what_the_salesforce_value_maps_to() -> None:
    report = run(sc_task(salesforce_task_id=LINK), sf_task(status="Completed"))
    assert "maps to 'completed'" in report.differences[0].message


@pytest.mark.parametrize(
    ("field", "sf_changes", "sc_status", "sc_priority"),
    [
        ("status", {"status": "In Progress"}, "open", "normal"),
        ("status", {"status": "In Progress"}, "completed", "normal"),
        ("status", {"status": "Waiting on someone else"}, "open", "normal"),
        ("status", {"status": "Deferred"}, "completed", "normal"),
        ("status", {"status": "Escalated (custom)"}, "open", "normal"),
        ("priority", {"priority": "Low"}, "open", "normal"),
        ("priority", {"priority": "Low"}, "open", "high"),
    ],
)
def test_values_that_are_not_synced_are_explained_never_differences(
    field: str, sf_changes: dict[str, str], sc_status: str, sc_priority: str
) -> None:
    report = run(
        sc_task(salesforce_task_id=LINK, status=sc_status, priority=sc_priority),
        sf_task(**sf_changes),  # type: ignore[arg-type]
    )
    assert report.ok
    assert explained(report) == [FindingKind.VALUE_NOT_SYNCED]
    assert report.explained[0].field == field


# -- the Subject -----------------------------------------------------------------------------


def test_a_subject_that_differs_is_explained_because_a_salesforce_rename_does_not_flow_back() -> (
    None
):
    report = run(sc_task(salesforce_task_id=LINK), sf_task(subject="Renamed in Salesforce"))
    assert report.ok
    assert explained(report) == [FindingKind.SUBJECT_DIFFERS]
    assert "does not flow back" in report.explained[0].message


def test_strict_subjects_count_a_subject_that_differs() -> None:
    report = run(
        sc_task(salesforce_task_id=LINK),
        sf_task(subject="Renamed in Salesforce"),
        strict_subjects=True,
    )
    assert kinds(report) == [FindingKind.FIELD_MISMATCH]
    assert report.differences[0].field == "name"


def test_the_subject_is_compared_with_the_rendered_template() -> None:
    user = replace(ANN, subject_template="[SC] {{activity_subject}}{{activity_type}}")
    name = "Call\nAnn " + "x" * 300
    expected = render_subject(user.subject_template, name)
    assert expected.startswith("[SC] Call Ann x") and len(expected) == SUBJECT_MAX_LENGTH
    agreeing = run(
        sc_task(user=user, name=name, salesforce_task_id=LINK),
        sf_task(owner=user, subject=expected),
        users=(user,),
        strict_subjects=True,
    )
    assert agreeing.ok and agreeing.explained == ()
    differing = run(
        sc_task(user=user, name=name, salesforce_task_id=LINK),
        sf_task(owner=user, subject=name),
        users=(user,),
    )
    assert explained(differing) == [FindingKind.SUBJECT_DIFFERS]


def test_a_template_without_the_name_never_compares_the_subject() -> None:
    user = replace(ANN, subject_template="Sales Connect reminder")
    report = run(
        sc_task(user=user, salesforce_task_id=LINK),
        sf_task(owner=user, subject="Anything at all"),
        users=(user,),
        strict_subjects=True,
    )
    assert report.ok and report.explained == ()


# -- scope -----------------------------------------------------------------------------------


def test_a_salesconnect_task_created_after_sync_was_turned_on_must_reach_salesforce() -> None:
    report = run(sc_task(created_at=ENABLED))
    assert kinds(report) == [FindingKind.MISSING_IN_SALESFORCE]
    assert report.differences[0].salesconnect_task_ids == ("tsk_1",)


def test_a_salesconnect_task_from_before_sync_was_turned_on_is_not_a_difference() -> None:
    report = run(sc_task(created_at=ENABLED - timedelta(milliseconds=1)))
    assert report.ok
    assert report.users[0].salesconnect_out_of_scope == 1


def test_an_old_salesconnect_task_that_is_linked_is_compared() -> None:
    report = run(
        sc_task(created_at=ENABLED - 30 * 24 * HOUR, salesforce_task_id=LINK, status="completed"),
        sf_task(),
    )
    assert kinds(report) == [FindingKind.FIELD_MISMATCH]


@pytest.mark.parametrize(
    "modified",
    [ENABLED - 24 * HOUR, ENABLED - HOUR, ENABLED, ENABLED + 24 * HOUR],
    ids=["window-start", "before-enable", "at-enable", "after-enable"],
)
def test_a_salesforce_task_modified_in_the_import_window_or_later_must_reach_salesconnect(
    modified: datetime,
) -> None:
    report = run(sf_task(modified=modified))
    assert kinds(report) == [FindingKind.MISSING_IN_SALESCONNECT]
    assert report.differences[0].salesforce_task_ids == (LINK,)


@pytest.mark.parametrize(
    "task",
    [
        sf_task(modified=ENABLED - 24 * HOUR - timedelta(milliseconds=1)),
        sf_task(subtype="Email"),
        sf_task(subtype="Call"),
        sf_task(is_recurrence=True),
    ],
    ids=["older-than-the-window", "email", "call", "recurring-master"],
)
def test_salesforce_tasks_out_of_scope_are_not_differences(task: SalesforceTask) -> None:
    report = run(task)
    assert report.ok
    assert report.users[0].salesforce_out_of_scope == 1


def test_tasks_of_users_not_compared_are_ignored() -> None:
    report = run(
        sc_task(user=BOB),
        sf_task(owner=BOB),
        sf_task("00T000000000009AAA", owner="005000000000099AAA"),
    )
    assert report.ok


def test_each_user_is_scoped_by_their_own_enable_time() -> None:
    late_bob = replace(BOB, last_enabled_at=ENABLED + 48 * HOUR)
    report = run(
        sc_task("tsk_a", created_at=ENABLED + HOUR),
        sc_task("tsk_b", user=late_bob, created_at=ENABLED + HOUR),
        users=(ANN, late_bob),
    )
    assert [(f.kind, f.user_id) for f in report.differences] == [
        (FindingKind.MISSING_IN_SALESFORCE, ANN.user_id)
    ]


# -- deletes ---------------------------------------------------------------------------------


def test_deleted_on_both_sides_is_agreement() -> None:
    report = run(sc_task(salesforce_task_id=LINK, deleted=True), sf_task(deleted=True))
    assert report.ok


def test_deleted_unpaired_tasks_are_not_differences() -> None:
    assert run(sc_task(deleted=True), sf_task(deleted=True)).ok


def test_deleted_in_salesconnect_only() -> None:
    report = run(sc_task(deleted=True), sf_task(sales_connect_id="tsk_1"))
    assert kinds(report) == [FindingKind.DELETED_IN_SALESCONNECT_ONLY]


def test_deleted_in_salesforce_only() -> None:
    report = run(sc_task(salesforce_task_id=LINK), sf_task(deleted=True))
    assert kinds(report) == [FindingKind.DELETED_IN_SALESFORCE_ONLY]


def test_a_link_to_a_task_that_no_longer_exists_anywhere() -> None:
    report = run(sc_task(salesforce_task_id=LINK))
    assert kinds(report) == [FindingKind.LINK_TO_MISSING_SALESFORCE_TASK]
    assert report.differences[0].salesforce_task_ids == (LINK,)


def test_a_deleted_task_linked_to_a_purged_one_is_agreement() -> None:
    assert run(sc_task(salesforce_task_id=LINK, deleted=True)).ok


# -- duplicates and extras -------------------------------------------------------------------


def test_two_salesforce_tasks_carrying_one_salesconnect_id_are_a_duplicate() -> None:
    report = run(
        sc_task(),
        sf_task("00T000000000001AAA", sales_connect_id="tsk_1"),
        sf_task("00T000000000002AAA", sales_connect_id="tsk_1"),
    )
    assert kinds(report) == [FindingKind.DUPLICATE_IN_SALESFORCE]
    assert report.differences[0].salesforce_task_ids == ("00T000000000001AAA", "00T000000000002AAA")


def test_a_deleted_twin_is_no_duplicate() -> None:
    report = run(
        sc_task(),
        sf_task("00T000000000001AAA", sales_connect_id="tsk_1"),
        sf_task("00T000000000002AAA", sales_connect_id="tsk_1", deleted=True),
    )
    assert report.ok


def test_a_linked_task_and_another_carrying_its_id_are_a_duplicate() -> None:
    report = run(
        sc_task(salesforce_task_id="00T000000000001AAA"),
        sf_task("00T000000000001AAA"),
        sf_task("00T000000000002AAA", sales_connect_id="tsk_1", status="Completed"),
    )
    assert kinds(report) == [FindingKind.DUPLICATE_IN_SALESFORCE]  # fields: the linked one


def test_two_salesconnect_tasks_linked_to_one_salesforce_task_are_a_duplicate() -> None:
    report = run(
        sc_task("tsk_1", salesforce_task_id=LINK),
        sc_task("tsk_2", salesforce_task_id=LINK),
        sf_task(),
    )
    assert kinds(report) == [FindingKind.DUPLICATE_IN_SALESCONNECT]
    assert report.differences[0].salesconnect_task_ids == ("tsk_1", "tsk_2")


def test_a_salesforce_task_naming_a_salesconnect_task_that_does_not_exist_is_extra() -> None:
    report = run(sf_task(sales_connect_id="tsk_gone"))
    assert kinds(report) == [FindingKind.EXTRA_IN_SALESFORCE]
    assert report.differences[0].salesconnect_task_ids == ("tsk_gone",)


def test_a_task_that_left_the_owner_is_explained_and_its_fields_not_compared() -> None:
    report = run(
        sc_task(salesforce_task_id=LINK, status="completed"),
        sf_task(owner="005000000000099AAA"),
    )
    assert report.ok
    assert explained(report) == [FindingKind.LEFT_SCOPE]


# -- properties ------------------------------------------------------------------------------

dates_or_none = st.none() | dates.map(date.isoformat)


@st.composite
def mirrored_pairs(draw: st.DrawFn) -> tuple[SalesConnectTask, SalesforceTask]:
    """A Sales Connect task and the Salesforce Task the sync would make of it, linked one way
    or the other; sometimes with a Salesforce value that is not synced."""
    index = draw(st.integers(0, 10**6))
    status = draw(st.sampled_from(TaskStatus))
    priority = draw(st.sampled_from(TaskPriority))
    details = draw(texts)
    name = draw(st.text(min_size=1, max_size=40))
    due = draw(dates_or_none)
    sf_id = f"00T{index:012d}AAA"
    sc_id = f"tsk_{index}"
    link = draw(st.sampled_from(["salesconnect", "external", "both"]))
    sc = sc_task(
        sc_id,
        name=name,
        status=status.value,
        priority=priority.value,
        due_date=due,
        details=details,
        salesforce_task_id=sf_id if link != "external" else None,
        created_at=ENABLED + timedelta(seconds=draw(st.integers(0, 10**6))),
    )
    sf_status = draw(st.sampled_from([STATUS_TO_SALESFORCE[status], "In Progress", "Deferred"]))
    sf_priority = draw(st.sampled_from([PRIORITY_TO_SALESFORCE[priority], "Low"]))
    sf = sf_task(
        sf_id,
        subject=render_subject(ANN.subject_template, name) or None,
        status=sf_status,
        priority=sf_priority,
        activity_date=due,
        description=details or None,
        sales_connect_id=sc_id if link != "salesconnect" else None,
    )
    return sc, sf


pair_lists = st.lists(mirrored_pairs(), max_size=12, unique_by=lambda pair: pair[0].id)


@settings(max_examples=150, deadline=None)
@given(pairs=pair_lists, seed=st.integers(0, 2**32))
def test_a_faithful_mirror_has_no_difference_in_any_order(
    pairs: list[tuple[SalesConnectTask, SalesforceTask]], seed: int
) -> None:
    tasks: list[SalesConnectTask | SalesforceTask] = [t for pair in pairs for t in pair]
    random.Random(seed).shuffle(tasks)
    report = run(*tasks, strict_subjects=True)
    assert report.ok, report.differences
    assert report.users[0].pairs == len(pairs)
    assert all(f.kind is FindingKind.VALUE_NOT_SYNCED for f in report.explained)


@settings(max_examples=150, deadline=None)
@given(pairs=pair_lists.filter(bool), data=st.data())
def test_breaking_one_pair_one_way_yields_exactly_that_difference(
    pairs: list[tuple[SalesConnectTask, SalesforceTask]], data: st.DataObject
) -> None:
    victim = data.draw(st.integers(0, len(pairs) - 1))
    sc, sf = pairs[victim]
    breakage = data.draw(
        st.sampled_from(["due_date", "details", "drop_salesforce", "delete_salesforce", "twin"])
    )
    expected: FindingKind
    replaced: list[SalesConnectTask | SalesforceTask]
    if breakage == "due_date":
        replaced = [sc, replace(sf, activity_date="1899-01-01")]
        expected = FindingKind.FIELD_MISMATCH
    elif breakage == "details":
        replaced = [sc, replace(sf, description=(sc.details or "") + "!")]
        expected = FindingKind.FIELD_MISMATCH
    elif breakage == "drop_salesforce":
        replaced = [sc]
        expected = (
            FindingKind.LINK_TO_MISSING_SALESFORCE_TASK
            if sc.salesforce_task_id
            else FindingKind.MISSING_IN_SALESFORCE
        )
    elif breakage == "delete_salesforce":
        replaced = [sc, replace(sf, is_deleted=True)]
        expected = FindingKind.DELETED_IN_SALESFORCE_ONLY
    else:
        twin = replace(sf, id="00X" + sf.id[3:], sales_connect_id=sc.id)
        replaced = [sc, sf, twin]
        expected = FindingKind.DUPLICATE_IN_SALESFORCE
    others: list[SalesConnectTask | SalesforceTask] = [
        t for index, pair in enumerate(pairs) if index != victim for t in pair
    ]
    report = run(*others, *replaced, strict_subjects=True)
    assert kinds(report) == [expected]
    assert sc.id in report.differences[0].salesconnect_task_ids
