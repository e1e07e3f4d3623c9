"""SPEC.md "Turning sync off" and "Turning sync on" step 5: turning sync off stops both directions
for that user and deletes nothing; turning it on again deletes from Sales Connect the tasks
deleted in Salesforce in the last 15 days (the recycle bin's reach).

Turning sync off is honoured within the workers' OWNER_CHECK_SECONDS (docs/sync.md: changes
already on their way when it was turned off may still land), so the tests make their changes
once that has passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.helpers import Both, outlast_worker_user_lists, wait_quiet


def turn_sync_off(both: Both) -> None:
    both.salesconnect.update_settings(both.user_id, task_sync="off")
    outlast_worker_user_lists()


def test_turning_sync_off_deletes_nothing_on_either_side(both: Both) -> None:
    pairs = [both.pair_from_salesconnect("Made in Sales Connect")]
    pairs.append(both.pair_from_salesforce("Made in Salesforce"))

    turn_sync_off(both)
    wait_quiet(both.system)

    for task, task_id in pairs:
        kept = both.salesconnect_task(task["id"])
        assert kept["deleted_at"] is None
        assert kept["salesforce_task_id"] == task_id
        assert both.salesforce_task(task_id)["IsDeleted"] is False
    outcome = both.system.verify(both.user_id)
    assert outcome.ok
    assert outcome.report["skipped_users"][0]["user_id"] == both.user_id


def test_turning_sync_off_stops_both_directions(both: Both) -> None:
    here, here_id = both.pair_from_salesconnect("Edited in Sales Connect while off")
    there, there_id = both.pair_from_salesforce("Edited in Salesforce while off")
    doomed_here, doomed_here_id = both.pair_from_salesconnect("Deleted in Sales Connect")
    doomed_there, doomed_there_id = both.pair_from_salesforce("Deleted in Salesforce")
    before_here = both.salesforce_task(here_id)
    before_there = both.salesconnect_task(there["id"])

    turn_sync_off(both)
    both.salesconnect.update_task(here["id"], name="Renamed", status="completed", details="x")
    both.salesconnect.delete_task(doomed_here["id"])
    new_here = both.create_in_salesconnect("Created in Sales Connect while off")
    both.update_in_salesforce(there_id, Subject="Renamed", Priority="High", Description="y")
    both.delete_in_salesforce(doomed_there_id)
    new_there = both.create_in_salesforce("Created in Salesforce while off")
    wait_quiet(both.system)

    assert both.salesforce_task(here_id) == before_here
    assert both.salesforce_task(doomed_here_id)["IsDeleted"] is False
    assert both.salesforce_tasks_for(new_here["id"]) == []
    assert both.salesconnect_task(there["id"]) == before_there
    assert both.salesconnect_task(doomed_there["id"])["deleted_at"] is None
    assert both.linked_salesconnect_tasks(new_there) == []
    assert both.system.verify(both.user_id).report["skipped_users"][0]["user_id"] == both.user_id


def test_turning_sync_on_again_deletes_what_was_deleted_in_salesforce_in_the_last_15_days(
    both: Both,
) -> None:
    deleted_now, deleted_now_id = both.pair_from_salesforce("Deleted while off")
    deleted_earlier, deleted_earlier_id = both.pair_from_salesconnect("Deleted 10 days ago")
    kept, kept_id = both.pair_from_salesforce("Kept")
    turn_sync_off(both)

    both.delete_in_salesforce(deleted_now_id)
    both.delete_in_salesforce(deleted_earlier_id)
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    # As if sync had been off for more than ten days: no poll can see this delete any more.
    both.system.admin.backdate(
        deleted_earlier_id, DeletedDate=ten_days_ago, SystemModstamp=ten_days_ago
    )
    both.salesconnect.update_settings(both.user_id, task_sync="on")
    settings = both.system.wait_first_sync(both.user_id)

    assert settings["first_enabled_at"] < settings["last_enabled_at"]
    both.wait_salesconnect(deleted_now["id"], deleted=True)
    both.wait_salesconnect(deleted_earlier["id"], deleted=True)
    assert both.salesconnect_task(kept["id"])["deleted_at"] is None
    assert both.salesforce_task(kept_id)["IsDeleted"] is False
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)

    # And both directions flow again.
    outlast_worker_user_lists()
    both.pair_from_salesconnect("After turning sync on again")
    both.pair_from_salesforce("After turning sync on again, in Salesforce")
    both.system.wait_until_consistent(both.user_id, strict_subjects=True)
