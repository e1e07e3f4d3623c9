"""SPEC.md "Visible failures" (and issue 6: sync errors that need the user show on the Settings
page): a change the org refuses (a validation rule) is parked with its reason where an operator
sees it (`tasksync parked`), shows as the user's last sync error, does not block the changes
behind it, and flows once the cause is fixed and the message replayed.
"""

from __future__ import annotations

import html
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import Both
from tests.support.system import RunningSystem
from tests.support.waiting import wait_for
from workers.up import tasksync_command

RULE_MESSAGE = "Subjects may not mention secrets."


def parked(system: RunningSystem, *args: str) -> Any:
    result = subprocess.run(
        [*tasksync_command(), "parked", *args],
        env=system.bridge_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout) if result.stdout.strip().startswith(("[", "{")) else None


def parked_for(system: RunningSystem, task_id: str) -> list[dict[str, Any]]:
    """Parked messages about one Sales Connect task, with their bodies."""
    found = []
    for summary in parked(system, "list", "--json", "--limit", "1000"):
        shown = parked(system, "show", summary["message_id"])
        if shown["body"]["record"].get("salesconnect_task_id") == task_id:
            found.append(shown)
    return found


@pytest.fixture
def secret_rule(system: RunningSystem) -> Iterator[None]:
    system.admin.set_validation_rules(
        [
            {
                "name": "No_Secret_Subjects",
                "field": "Subject",
                "matches": "(?i)secret",
                "message": RULE_MESSAGE,
            }
        ]
    )
    try:
        yield
    finally:
        system.admin.set_validation_rules([])


def test_a_change_refused_by_an_org_validation_rule_is_shown_parked_and_blocks_nothing(
    both: Both, secret_rule: None
) -> None:
    system = both.system
    edited, edited_id = both.pair_from_salesforce("Harmless name")

    refused_create = both.create_in_salesconnect("Secret plan")
    both.salesconnect.update_task(edited["id"], name="Top secret now")
    # Behind them: another task, and the next edit of the very task whose rename was refused.
    after = both.create_in_salesconnect("Ordinary plan")
    both.salesconnect.update_task(edited["id"], details="still flows")

    both.wait_pushed(after["id"])
    both.wait_salesforce(edited_id, Description="still flows", Subject="Harmless name")
    settings = wait_for(
        lambda: (s := both.salesconnect.settings(both.user_id))["last_sync_error"] and s,
        what="the sync error on the Settings page",
    )
    assert RULE_MESSAGE in settings["last_sync_error"]["message"]
    page = html.unescape(system.pages(both.user_id).get(f"/users/{both.user_id}/settings").text)
    shown = page[page.index('id="last-sync-error"') :]
    assert RULE_MESSAGE in shown[: shown.index("</dd>")]

    create_parked = wait_for(
        lambda: parked_for(system, refused_create["id"]), what="the refused create to be parked"
    )
    rename_parked = wait_for(
        lambda: [p for p in parked_for(system, edited["id"]) if "name" in p["body"]["changed"]],
        what="the refused rename to be parked",
    )
    for message in (*create_parked, *rename_parked):
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in message["error"]
        assert RULE_MESSAGE in message["error"]
    assert both.salesforce_tasks_for(refused_create["id"]) == []
    assert system.verify(both.user_id).kinds() == ["missing_in_salesforce"]

    # The operator removes the rule and replays: both changes arrive.
    system.admin.set_validation_rules([])
    parked(system, "replay", *(m["message_id"] for m in (*create_parked, *rename_parked)))
    assert both.wait_pushed(refused_create["id"])["Subject"] == "Secret plan"
    both.wait_salesforce(edited_id, Subject="Top secret now", Description="still flows")
    system.wait_until_consistent(both.user_id, strict_subjects=True)
