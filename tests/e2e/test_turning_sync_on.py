"""SPEC.md "Turning sync on": the 24-hour import, existing Sales Connect tasks not pushed, tasks
created afterwards pushed, the first sync's state on the Settings page, and the Command Center
showing today and tomorrow only while everything imported is synced.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.fields import parse_utc_stamp
from tests.e2e.helpers import Both, UserPool, outlast_worker_user_lists, wait_quiet
from tests.support.waiting import wait_for

USERS_PER_BATCH = 2


def turn_sync_on(both: Both) -> dict[str, Any]:
    """Sync on through the API; returns the settings once the first sync is done."""
    both.salesconnect.update_settings(both.user_id, task_sync="on")
    return both.system.wait_first_sync(both.user_id)


def backdate(both: Both, task_id: str, *, created: timedelta, modified: timedelta) -> None:
    now = datetime.now(UTC)
    both.system.admin.backdate(
        task_id,
        CreatedDate=now - created,
        LastModifiedDate=now - modified,
        SystemModstamp=now - modified,
    )


def test_salesforce_tasks_created_or_updated_in_the_last_24_hours_are_imported(
    users: UserPool,
) -> None:
    both = users.take("Import window", sync=False, batch=1)
    hours = timedelta(hours=1)
    made = {
        "just now": both.create_in_salesforce("Just now"),
        "20 h ago": both.create_in_salesforce("20 h ago"),
        "23.5 h ago": both.create_in_salesforce("23.5 h ago"),
        "made 3 days ago, updated 2 h ago": both.create_in_salesforce("Updated lately"),
        "24.5 h ago": both.create_in_salesforce("24.5 h ago"),
        "30 h ago": both.create_in_salesforce("30 h ago"),
        "made 3 days ago, updated 25 h ago": both.create_in_salesforce("Updated long ago"),
    }
    backdate(both, made["20 h ago"], created=20 * hours, modified=20 * hours)
    backdate(both, made["23.5 h ago"], created=23.5 * hours, modified=23.5 * hours)
    backdate(both, made["made 3 days ago, updated 2 h ago"], created=72 * hours, modified=2 * hours)
    backdate(both, made["24.5 h ago"], created=24.5 * hours, modified=24.5 * hours)
    backdate(both, made["30 h ago"], created=30 * hours, modified=30 * hours)
    backdate(
        both, made["made 3 days ago, updated 25 h ago"], created=72 * hours, modified=25 * hours
    )
    imported_kinds = ["just now", "20 h ago", "23.5 h ago", "made 3 days ago, updated 2 h ago"]

    turn_sync_on(both)

    for kind in imported_kinds:
        both.wait_imported(made[kind])
    # The first sync published all it imports before it said "done".
    wait_quiet(both.system, salesforce_poll=False)
    linked = {t["salesforce_task_id"] for t in both.live_salesconnect_tasks()}
    assert linked == {made[kind] for kind in imported_kinds}
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_existing_sales_connect_tasks_are_not_pushed_when_sync_is_turned_on(
    users: UserPool,
) -> None:
    both = users.take("Existing tasks", sync=False, batch=1)
    existing = [both.create_in_salesconnect(f"Existing {n}") for n in range(3)]

    turn_sync_on(both)
    # Not even when edited, completed or deleted afterwards.
    both.salesconnect.update_task(existing[0]["id"], name="Existing, renamed")
    both.salesconnect.update_task(existing[1]["id"], status="completed")
    both.salesconnect.delete_task(existing[2]["id"])
    new = both.create_in_salesconnect("Created after turning sync on")

    both.wait_pushed(new["id"])
    wait_quiet(both.system, salesforce_poll=False)
    assert [t["Sales_Connect_Id__c"] for t in both.owned_salesforce_tasks()] == [new["id"]]
    for task in existing:
        assert both.salesconnect_task(task["id"])["salesforce_task_id"] is None
    outcome = both.system.wait_until_consistent(both.user_id, strict_subjects=True)
    assert outcome.report["users"][0]["salesconnect_tasks_out_of_scope"] == 2


def test_sales_connect_tasks_created_after_sync_is_turned_on_are_pushed(users: UserPool) -> None:
    both = users.take("New tasks", sync=False, batch=1)
    turn_sync_on(both)

    created = [both.create_in_salesconnect(f"New {n}", f"2026-12-0{n + 1}") for n in range(3)]

    for task in created:
        pushed = both.wait_pushed(task["id"])
        assert pushed["Subject"] == task["name"]
        assert pushed["ActivityDate"] == task["due_date"]
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def settings_page(both: Both) -> str:
    response = both.system.pages(both.user_id).get(f"/users/{both.user_id}/settings")
    response.raise_for_status()
    return html.unescape(response.text)


def first_sync_block(page: str) -> str:
    start = page.index('id="first-sync-state"')
    return page[start : page.index("</dd>", start)]


def local(stamp: str, time_zone: str) -> str:
    return parse_utc_stamp(stamp).astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")


def test_the_settings_page_shows_the_first_sync_running_and_when_it_ended(
    users: UserPool,
) -> None:
    both = users.take("Settings page", sync=False, time_zone="Asia/Kolkata", batch=1)
    for n in range(3):
        both.create_in_salesforce(f"To import {n}")
    system = both.system
    assert "Not started" in first_sync_block(settings_page(both))

    # Slow Salesforce down so the first sync runs long enough to be seen running.
    system.admin.set_faults(latency_ms=700)
    try:
        # The user's way: the Settings form, saved.
        saved = system.pages(both.user_id).post(
            f"/users/{both.user_id}/settings",
            {"task_sync": "on", "activity_subject_template": "{{activity_subject}}"},
        )
        assert saved.status_code == 303
        running = wait_for(
            lambda: (
                (s := both.salesconnect.settings(both.user_id))["first_sync"]["state"] == "running"
                and s
            ),
            timeout=20,
            interval=0.01,
            what="the first sync to be running",
        )
        shown_running = first_sync_block(settings_page(both))
        done = system.wait_first_sync(both.user_id)
    finally:
        system.admin.set_faults(latency_ms=0)

    assert running["task_sync"] == "on"
    first = done["first_sync"]
    assert first["started_at"] == running["first_sync"]["started_at"]
    enabled_at = parse_utc_stamp(done["last_enabled_at"])
    started_at, finished_at = (
        parse_utc_stamp(first["started_at"]),
        parse_utc_stamp(first["finished_at"]),
    )
    assert enabled_at <= started_at <= finished_at <= datetime.now(UTC)
    assert first["error"] is None
    assert "Running" in shown_running
    assert f"started {local(first['started_at'], 'Asia/Kolkata')}" in shown_running
    shown_done = first_sync_block(settings_page(both))
    assert "Done" in shown_done
    assert f"started {local(first['started_at'], 'Asia/Kolkata')}" in shown_done
    assert f"ended {local(first['finished_at'], 'Asia/Kolkata')}" in shown_done
    system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_the_command_center_shows_only_today_and_tomorrow_while_every_import_is_synced(
    users: UserPool,
) -> None:
    zone = "Pacific/Kiritimati"  # UTC+14: its today is often not UTC's today
    both = users.take("Command Center", sync=False, time_zone=zone, batch=1)
    today = wait_for(
        lambda: (
            (cc := both.salesconnect.command_center(both.user_id))["today"]
            == datetime.now(ZoneInfo(zone)).date().isoformat()
            and date.fromisoformat(cc["today"])
        ),
        what="the Command Center's today to be the user's today",
    )
    due = {
        "yesterday": today - timedelta(days=1),
        "today": today,
        "tomorrow": today + timedelta(days=1),
        "in 3 days": today + timedelta(days=3),
    }
    made = {
        label: both.create_in_salesforce(f"Due {label}", ActivityDate=day.isoformat())
        for label, day in due.items()
    }
    made["no due date"] = both.create_in_salesforce("No due date")

    turn_sync_on(both)

    imported = {label: both.wait_imported(task_id) for label, task_id in made.items()}
    assert imported["in 3 days"]["due_date"] == due["in 3 days"].isoformat()
    center = both.salesconnect.command_center(both.user_id)
    assert center["today"] == today.isoformat()
    assert center["tomorrow"] == (today + timedelta(days=1)).isoformat()
    assert sorted(t["id"] for t in center["tasks"]) == sorted(
        [imported["today"]["id"], imported["tomorrow"]["id"]]
    )
    page = both.system.pages(both.user_id).get(f"/users/{both.user_id}/command-center").text
    assert "Due today" in page and "Due tomorrow" in page
    assert "Due in 3 days" not in page and "Due yesterday" not in page
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)


# -- the workers' list of synced users -------------------------------------------------


def test_changes_made_right_after_turning_sync_on_reach_the_other_side(users: UserPool) -> None:
    known = users.take()
    starters = [users.take("Quick starter", sync=False, batch=2) for _ in range(2)]
    system = known.system
    # Both workers idle past their lists' age, then read them now for a user they know.
    wait_quiet(system, salesforce_poll=False)
    outlast_worker_user_lists()
    known.wait_pushed(known.create_in_salesconnect("Makes to-salesforce read its list")["id"])
    known.wait_imported(known.create_in_salesforce("Makes to-salesconnect read its list"))

    for both in starters:
        both.salesconnect.update_settings(both.user_id, task_sync="on")
    task = starters[0].create_in_salesconnect("Created at once in Sales Connect")
    task_id = starters[1].create_in_salesforce("Created at once in Salesforce")

    # Both arrive within a second once the workers read their lists on a miss.
    starters[0].wait_pushed(task["id"], timeout=5)
    starters[1].wait_imported(task_id, timeout=5)
