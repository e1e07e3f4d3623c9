"""SPEC.md "Which Salesforce tasks": only Tasks owned by the Salesforce user the Sales Connect
user is connected to, plain to-do Tasks (`TaskSubtype` = Task), and no recurring-series masters.

The Tasks are made once for the module, on both paths a Task can take: before sync is turned on
(the first sync's import) and while it is on (notifications and the poller). Each test then
checks one rule against that state, after the whole system has gone quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.e2e.helpers import Both, UserPool, wait_quiet
from tests.support.system import RunningSystem

OUT_OF_SCOPE_KINDS = ("email", "call", "recurring", "sales rep's", "other user's")


@dataclass
class Scenery:
    syncing: Both  # made its Tasks while sync was on
    enabling: Both  # made its Tasks before turning sync on
    other: Both  # another synced user, owner of one Task `syncing` made
    out_of_scope: dict[str, dict[str, str]]  # user label -> kind -> Task id
    in_scope: dict[str, str]  # user label -> the Task that must arrive


def make_tasks(both: Both, rep_id: str, other_owner: str | None) -> dict[str, str]:
    made = {
        "email": both.create_in_salesforce("Logged email", TaskSubtype="Email"),
        "call": both.create_in_salesforce("Logged call", TaskSubtype="Call"),
        "recurring": both.create_in_salesforce("Weekly series", IsRecurrence=True),
        "sales rep's": both.create_in_salesforce("For the rep", OwnerId=rep_id),
    }
    if other_owner is not None:
        made["other user's"] = both.create_in_salesforce("For a colleague", OwnerId=other_owner)
    return made


@pytest.fixture(scope="module")
def scenery(system: RunningSystem, users: UserPool) -> Scenery:
    rep_id = system.emulator.sales_rep.id
    syncing, other = users.take(), users.take()
    enabling = users.take("Turns sync on later", sync=False, batch=1)

    before = make_tasks(enabling, rep_id, other_owner=None)
    enabling_marker = enabling.create_in_salesforce("In scope before")
    system.salesconnect.update_settings(enabling.user_id, task_sync="on")
    system.wait_first_sync(enabling.user_id)

    during = make_tasks(syncing, rep_id, other_owner=other.owner_id)
    syncing_marker = syncing.create_in_salesforce("In scope while on")

    syncing.wait_imported(syncing_marker)
    enabling.wait_imported(enabling_marker)
    other.wait_imported(during["other user's"])
    wait_quiet(system)
    return Scenery(
        syncing=syncing,
        enabling=enabling,
        other=other,
        out_of_scope={"syncing": during, "enabling": before},
        in_scope={"syncing": syncing_marker, "enabling": enabling_marker},
    )


def linked_anywhere(scenery: Scenery, task_id: str) -> list[str]:
    return [
        f"{label} has {task['id']}"
        for label, both in (
            ("syncing", scenery.syncing),
            ("enabling", scenery.enabling),
            ("other", scenery.other),
        )
        for task in both.linked_salesconnect_tasks(task_id)
    ]


def only_the_in_scope_task_arrived(scenery: Scenery) -> None:
    for label, both in (("syncing", scenery.syncing), ("enabling", scenery.enabling)):
        names = [t["salesforce_task_id"] for t in both.live_salesconnect_tasks()]
        assert names == [scenery.in_scope[label]]
        both.system.wait_until_consistent(both.user_id, strict_subjects=True)


def test_a_task_owned_by_another_salesforce_user_never_appears_in_sales_connect(
    scenery: Scenery,
) -> None:
    rep_tasks = [made["sales rep's"] for made in scenery.out_of_scope.values()]
    for task_id in rep_tasks:
        assert linked_anywhere(scenery, task_id) == []
    # The Task the syncing user made for a colleague is the colleague's, in their Sales Connect.
    colleague_task = scenery.out_of_scope["syncing"]["other user's"]
    assert linked_anywhere(scenery, colleague_task) == [
        f"other has {scenery.other.linked_salesconnect_tasks(colleague_task)[0]['id']}"
    ]
    only_the_in_scope_task_arrived(scenery)
    scenery.other.system.wait_until_consistent(scenery.other.user_id, strict_subjects=True)


def test_logged_emails_and_calls_never_appear_in_sales_connect(scenery: Scenery) -> None:
    for made in scenery.out_of_scope.values():
        for kind in ("email", "call"):
            assert linked_anywhere(scenery, made[kind]) == [], kind
    only_the_in_scope_task_arrived(scenery)


def test_a_recurring_series_master_never_appears_in_sales_connect(scenery: Scenery) -> None:
    for made in scenery.out_of_scope.values():
        assert linked_anywhere(scenery, made["recurring"]) == []
    only_the_in_scope_task_arrived(scenery)
