"""The field mapping of SPEC.md, as properties that must hold in every process time zone."""

from __future__ import annotations

import time
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mapping import (
    DEFAULT_SUBJECT_TEMPLATE,
    SUBJECT_MAX_LENGTH,
    UNTITLED_TASK_NAME,
    MappingError,
    is_syncable_salesforce_task,
    neutral_from_salesforce,
    render_subject,
    salesforce_values,
    template_uses_name,
    utf16_length,
)
from schemas.task_change import (
    ChangedFields,
    TaskPriority,
    TaskStatus,
    dump_task_change,
    load_task_change,
)
from tests.strategies import changed_fields, dates, task_changes

# The process time zone fixture is set once per test; hypothesis examples all run inside it.
in_every_zone = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"
one_line_names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters=LINE_BREAKS),
    min_size=1,
    max_size=SUBJECT_MAX_LENGTH,
).filter(lambda name: utf16_length(name) <= SUBJECT_MAX_LENGTH and name.strip() != "")
short_details = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=2000)
UNMAPPED_STATUSES = ["In Progress", "Waiting on someone else", "Deferred", "Escalated", "", None]
UNMAPPED_PRIORITIES = ["Low", "Urgent", "", None]
OFFSETS = {"UTC": {"+0000"}, "Pacific/Kiritimati": {"+1400"}, "America/Adak": {"-1000", "-0900"}}


def test_the_process_time_zone_really_changes(process_time_zone: str) -> None:
    assert time.strftime("%z") in OFFSETS[process_time_zone]


@in_every_zone
@given(changed=changed_fields(name=one_line_names))
def test_sales_connect_to_salesforce_and_back_is_the_identity(
    process_time_zone: str, changed: ChangedFields
) -> None:
    if isinstance(changed.details, str) and utf16_length(changed.details) > 32_000:
        return
    body = salesforce_values(changed, subject_template=DEFAULT_SUBJECT_TEMPLATE, creating=True)
    assert neutral_from_salesforce(body, importing=True, changed_fields=body) == changed


@in_every_zone
@given(changed=changed_fields(name=one_line_names))
def test_an_update_maps_only_the_fields_that_changed(
    process_time_zone: str, changed: ChangedFields
) -> None:
    body = salesforce_values(changed, subject_template="Call: {{activity_subject}}", creating=False)
    mapped = {
        "name": "Subject",
        "status": "Status",
        "priority": "Priority",
        "due_date": "ActivityDate",
        "details": "Description",
    }
    assert set(body) == {mapped[name] for name in changed.present()}


@in_every_zone
@given(day=dates)
def test_no_due_date_ever_shifts(process_time_zone: str, day: date) -> None:
    body = salesforce_values(ChangedFields(due_date=day), subject_template="", creating=False)
    assert body == {"ActivityDate": day.isoformat()}
    assert neutral_from_salesforce(body, importing=False).due_date == day


@in_every_zone
@given(change=task_changes())
def test_no_date_or_stamp_shifts_through_the_message_contract(
    process_time_zone: str, change: object
) -> None:
    assert load_task_change(dump_task_change(change)) == change  # type: ignore[arg-type]


@given(
    status=st.sampled_from(UNMAPPED_STATUSES),
    priority=st.sampled_from(UNMAPPED_PRIORITIES),
    importing=st.booleans(),
)
def test_an_unmapped_salesforce_value_never_yields_a_change(
    status: str | None, priority: str | None, importing: bool
) -> None:
    changed = neutral_from_salesforce(
        {"Status": status, "Priority": priority},
        importing=importing,
        changed_fields=["Status", "Priority"],
    )
    assert changed == ChangedFields()


def test_status_and_priority_tables() -> None:
    both = neutral_from_salesforce(
        {"Status": "Completed", "Priority": "High"},
        importing=False,
        changed_fields=["Status", "Priority"],
    )
    assert both == ChangedFields(status=TaskStatus.COMPLETED, priority=TaskPriority.HIGH)
    assert salesforce_values(
        ChangedFields(status=TaskStatus.OPEN, priority=TaskPriority.NORMAL),
        subject_template=DEFAULT_SUBJECT_TEMPLATE,
        creating=False,
    ) == {"Status": "Not Started", "Priority": "Normal"}


def test_an_import_while_low_takes_the_sales_connect_default() -> None:
    imported = neutral_from_salesforce(
        {
            "Subject": "Call Ann",
            "Status": "In Progress",
            "Priority": "Low",
            "ActivityDate": "2026-11-23",
            "Description": None,
        },
        importing=True,
    )
    assert imported == ChangedFields(name="Call Ann", due_date=date(2026, 11, 23), details="")


def test_a_salesforce_rename_does_not_flow_back() -> None:
    assert (
        neutral_from_salesforce({"Subject": "Renamed"}, importing=False, changed_fields=["Subject"])
        == ChangedFields()
    )


def test_an_import_without_subject_gets_a_name() -> None:
    imported = neutral_from_salesforce(
        {"Subject": None}, importing=True, changed_fields=["Subject"]
    )
    assert imported == ChangedFields(name=UNTITLED_TASK_NAME)


def test_a_rename_reaches_salesforce_only_when_the_template_uses_the_name() -> None:
    rename = ChangedFields(name="Send proposal")
    assert salesforce_values(
        rename, subject_template="[SC] {{activity_subject}}", creating=False
    ) == {"Subject": "[SC] Send proposal"}
    assert (
        salesforce_values(rename, subject_template="Reminder from Sales Connect", creating=False)
        == {}
    )
    assert salesforce_values(
        rename, subject_template="Reminder from Sales Connect", creating=True
    ) == {"Subject": "Reminder from Sales Connect"}


@pytest.mark.parametrize(
    ("template", "name", "subject"),
    [
        ("{{activity_subject}}", "Call Bob", "Call Bob"),
        ("{{ activity_subject }} ({{activity_type}})", "Call Bob", "Call Bob ()"),
        ("{{sales_campaign_name}}: {{activity_subject}}", "Call Bob", ": Call Bob"),
        ("Follow up\n{{activity_subject}}", "Call\r\nBob", "Follow up Call Bob"),
        ("{{activity_subject}}", "x" * 300, "x" * 255),
        ("{{activity_subject}}", "😀" * 200, "😀" * 127),
    ],
)
def test_subject_template_rendering(template: str, name: str, subject: str) -> None:
    assert render_subject(template, name) == subject


@given(template=st.text(max_size=400), name=st.text(max_size=400))
def test_a_rendered_subject_is_one_line_within_255(template: str, name: str) -> None:
    subject = render_subject(template, name)
    assert utf16_length(subject) <= SUBJECT_MAX_LENGTH
    assert not any(char in subject for char in LINE_BREAKS)


def test_template_uses_name() -> None:
    assert template_uses_name("{{activity_subject}}")
    assert template_uses_name("x {{ activity_subject }} y")
    assert not template_uses_name("{{activity_type}} only")


def test_description_up_to_32000_characters() -> None:
    assert salesforce_values(
        ChangedFields(details="a" * 32_000), subject_template="", creating=False
    ) == {"Description": "a" * 32_000}
    with pytest.raises(MappingError) as caught:
        salesforce_values(ChangedFields(details="a" * 32_001), subject_template="", creating=False)
    assert caught.value.field == "details"
    assert "32,000" in caught.value.rule


def test_empty_details_clear_the_description() -> None:
    assert salesforce_values(ChangedFields(details=""), subject_template="", creating=False) == {
        "Description": None
    }
    assert neutral_from_salesforce(
        {"Description": None}, importing=False, changed_fields=["Description"]
    ) == ChangedFields(details="")


@pytest.mark.parametrize("bad", ["2026-11-22T00:00:00.000+0000", "22/11/2026", 20261122])
def test_a_malformed_activity_date_is_a_mapping_error(bad: object) -> None:
    with pytest.raises(MappingError) as caught:
        neutral_from_salesforce(
            {"ActivityDate": bad}, importing=False, changed_fields=["ActivityDate"]
        )
    assert caught.value.field == "ActivityDate"


@pytest.mark.parametrize(
    ("values", "syncable"),
    [
        ({"TaskSubtype": "Task", "IsRecurrence": False}, True),
        ({"TaskSubtype": "Email", "IsRecurrence": False}, False),
        ({"TaskSubtype": "Call", "IsRecurrence": False}, False),
        ({"TaskSubtype": "Task", "IsRecurrence": True}, False),
        ({"TaskSubtype": None}, False),
    ],
)
def test_which_salesforce_tasks_are_in_scope(values: dict[str, object], syncable: bool) -> None:
    assert is_syncable_salesforce_task(values) is syncable
