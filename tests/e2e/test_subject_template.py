"""SPEC.md "Subject": the Salesforce Subject is rendered from the user's activity subject
template; a Sales Connect rename reaches it only when the template contains
`{{activity_subject}}`; a Salesforce rename never flows back; an import takes the Subject as the
name. Rendering: other dynamic fields empty, line breaks stripped, cut to 255 characters.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import Both, synced_users_each
from tests.support.system import RunningSystem

TEMPLATES = {
    "default": "{{activity_subject}}",
    "with name": "Follow up: {{activity_subject}} (from Sales Connect)",
    "without name": "Reminder from Sales Connect",
    "other fields": "{{activity_type}}Call {{ activity_subject }} about {{sales_campaign_name}}.",
    "line breaks": "Sales Connect:\n{{activity_subject}}\r\n\r\n(reminder)",
    "prefix": "SC - {{activity_subject}}",
    "import": "SC - {{activity_subject}}",
}


@pytest.fixture(scope="module")
def templated(system: RunningSystem) -> dict[str, Both]:
    """One fresh user per template, all made at once."""
    made = synced_users_each(
        system, [(f"Template {key}", {"subject_template": t}) for key, t in TEMPLATES.items()]
    )
    return dict(zip(TEMPLATES, made, strict=True))


def test_a_rename_reaches_the_subject_when_the_template_contains_activity_subject(
    templated: dict[str, Both],
) -> None:
    both = templated["with name"]
    task, task_id = both.pair_from_salesconnect("Call Ann")
    assert both.salesforce_task(task_id)["Subject"] == ("Follow up: Call Ann (from Sales Connect)")

    both.salesconnect.update_task(task["id"], name="Call Bob")

    both.wait_salesforce(task_id, Subject="Follow up: Call Bob (from Sales Connect)")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_rename_does_not_reach_the_subject_when_the_template_lacks_activity_subject(
    templated: dict[str, Both],
) -> None:
    both = templated["without name"]
    task, task_id = both.pair_from_salesconnect("Call Ann")
    assert both.salesforce_task(task_id)["Subject"] == "Reminder from Sales Connect"

    # With a details change, whose arrival shows the rename was handled too.
    both.salesconnect.update_task(task["id"], name="Call Bob", details="renamed")

    after = both.wait_salesforce(task_id, Description="renamed")
    assert after["Subject"] == "Reminder from Sales Connect"
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_dynamic_fields_other_than_activity_subject_render_empty(
    templated: dict[str, Both],
) -> None:
    both = templated["other fields"]

    _, task_id = both.pair_from_salesconnect("Ann")

    assert both.salesforce_task(task_id)["Subject"] == "Call Ann about ."
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_line_breaks_are_stripped_from_the_rendered_subject(templated: dict[str, Both]) -> None:
    both = templated["line breaks"]

    _, task_id = both.pair_from_salesconnect("Call Ann\nabout the\r\nrenewal")

    subject = both.salesforce_task(task_id)["Subject"]
    assert "\n" not in subject and "\r" not in subject
    # Each run of line breaks becomes one space, so words on two lines stay two words.
    assert subject == "Sales Connect: Call Ann about the renewal (reminder)"
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_the_rendered_subject_is_cut_to_255_characters(templated: dict[str, Both]) -> None:
    both = templated["prefix"]
    long_name = "".join(f"{n:04d} " for n in range(200))  # 1,000 characters
    emoji_name = "😀" * 200  # 400 UTF-16 units, as Salesforce counts them

    _, long_id = both.pair_from_salesconnect(long_name)
    _, emoji_id = both.pair_from_salesconnect(emoji_name)

    assert both.salesforce_task(long_id)["Subject"] == ("SC - " + long_name)[:255]
    # 5 units of prefix leave 250 units: 125 emoji, never half of one.
    assert both.salesforce_task(emoji_id)["Subject"] == "SC - " + "😀" * 125
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_salesforce_rename_does_not_flow_back_to_the_sales_connect_name(
    templated: dict[str, Both],
) -> None:
    both = templated["default"]
    task, task_id = both.pair_from_salesconnect("Name in Sales Connect")

    both.update_in_salesforce(task_id, Subject="Renamed in Salesforce", Description="and noted")

    after = both.wait_salesconnect(task["id"], details="and noted")
    assert after["name"] == "Name in Sales Connect"
    outcome = both.system.wait_until_consistent(both.user_id)
    assert [f["kind"] for f in outcome.explained] == ["subject_differs"]


def test_a_task_created_in_salesforce_is_imported_with_its_subject_as_the_name(
    templated: dict[str, Both],
) -> None:
    both = templated["import"]

    task, task_id = both.pair_from_salesforce("Made in Salesforce")

    # The Subject becomes the name as it is: the template is not reversed.
    assert task["name"] == "Made in Salesforce"
    assert both.salesforce_task(task_id)["Subject"] == "Made in Salesforce"
    outcome = both.system.wait_until_consistent(both.user_id)
    assert [f["kind"] for f in outcome.explained] == ["subject_differs"]
