"""What the end-to-end tests share: a synced user seen from both sides, waits on both systems,
and `wait_quiet`, which proves that the whole system has finished reacting.

Negative rules ("leaves Sales Connect as it was", "no write back", "never appears") cannot be
waited for directly. `wait_quiet` waits instead until every place a reaction could still be on
its way is empty: the emulator's notification outbox, the Sales Connect producer's cursor (at
the feed's head), the Salesforce poller's cursor (past the moment the wait began, so it has
read every Task written before), and every work and retry queue of the vhost (no message ready
or unacknowledged, read live with `rabbitmqctl`; the management API's figures lag by seconds).
Producers publish before their cursors move and workers ack after they wrote, so once all of
these hold together, twice in a row with nothing new in between, nothing more can happen.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from simple_salesforce.api import Salesforce, SFType

from bridge.ledger import Ledger
from bridge.messaging.topology import PARKED_QUEUE
from bridge.producers.salesconnect import CURSOR_NAME as FEED_CURSOR
from bridge.producers.salesforce import POLL_CURSOR
from tests.support.salesconnect import SalesConnectClient, SalesConnectError, TaskJson
from tests.support.system import RunningSystem, SyncedUser
from tests.support.waiting import wait_for
from workers.worker_command import OWNER_CHECK_SECONDS

SALESFORCE_FIELDS: Final = (
    "Id, OwnerId, Subject, Status, Priority, ActivityDate, Description, IsDeleted, "
    "Sales_Connect_Id__c, TaskSubtype, IsRecurrence, LastModifiedById, LastModifiedDate, "
    "SystemModstamp"
)
WAIT: Final = 20.0


# -- the whole system at rest ------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> list[list[str]]:
    rabbitmqctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    result = subprocess.run(
        [rabbitmqctl, *args, "--no-table-headers", "--silent"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [line.split("\t") for line in result.stdout.splitlines() if line.strip()]


def busy_queues(system: RunningSystem) -> dict[str, tuple[int, int]]:
    """Queues of the system's vhost holding messages (ready, unacknowledged), parking aside,
    and channels holding unacknowledged messages (as `channel <name>`: (0, unacknowledged)).

    The channels are asked too because a quorum queue's counts are its last published metrics
    (refreshed every few seconds): a worker can hold a batch while its queue still says 0."""
    assert system.vhost is not None
    vhost = system.vhost.name
    busy: dict[str, tuple[int, int]] = {}
    for parts in _rabbitmqctl(
        "list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged"
    ):
        if len(parts) != 3 or parts[0] == PARKED_QUEUE:
            continue
        ready, unacked = int(parts[1]), int(parts[2])
        if ready or unacked:
            busy[parts[0]] = (ready, unacked)
    for parts in _rabbitmqctl("list_channels", "vhost", "name", "messages_unacknowledged"):
        if len(parts) == 3 and parts[0] == vhost and int(parts[2]):
            busy[f"channel {parts[1]}"] = (0, int(parts[2]))
    return busy


def _producers_caught_up(
    system: RunningSystem, ledger: Ledger, since: datetime, *, salesforce_poll: bool
) -> bool:
    if system.admin.notifications().get("pending"):
        return False
    feed = system.bridge.get("salesconnect-producer")
    if feed is not None and feed.is_running:
        cursor = ledger.cursor(FEED_CURSOR)
        if cursor is None or int(cursor.value) < system.salesconnect.head_seq():
            return False
    poller = system.bridge.get("salesforce-poller")
    if salesforce_poll and poller is not None and poller.is_running:
        poll = ledger.cursor(POLL_CURSOR)
        if poll is None or poll.position_at is None or poll.position_at < since:
            return False
    return True


def wait_quiet(
    system: RunningSystem, *, salesforce_poll: bool = True, timeout: float = 30.0
) -> None:
    """Wait until nothing in the system can still react to what happened before the call.

    `salesforce_poll=False` leaves the poller out (it reads only rows older than its settle
    time, 2 s, so waiting for it costs 2-3 s): for questions about what the Sales Connect side
    and the workers do, where no Salesforce-side reaction is in question.
    """
    with Ledger.open(system.ledger_url, create_schema=False) as ledger:

        def caught_up(since: datetime) -> bool:
            return _producers_caught_up(system, ledger, since, salesforce_poll=salesforce_poll)

        def quiet() -> bool:
            since = datetime.now(UTC)
            head = system.salesconnect.head_seq()
            if busy_queues(system):
                return False
            wait_for(
                lambda: caught_up(since),
                timeout=timeout,
                interval=0.1,
                what="the producers to catch up",
            )
            # Whatever the producers published before their cursors moved is in the queues.
            return not busy_queues(system) and system.salesconnect.head_seq() == head

        wait_for(quiet, timeout=timeout, interval=0.1, what="the system to be quiet")


def outlast_worker_user_lists(changed_at: datetime | None = None) -> None:
    """Wait until the workers' lists of synced users are newer than a settings change.

    The workers keep the list for OWNER_CHECK_SECONDS: turning sync off is, by design, honoured
    within that time (a miss reads the list again, so turning sync on needs no wait), and
    `test_changes_made_right_after_turning_sync_on_reach_the_other_side` uses it to make sure
    the workers' lists are freshly read when a user turns sync on."""
    ready_at = (changed_at or datetime.now(UTC)) + timedelta(seconds=OWNER_CHECK_SECONDS + 0.05)
    wait_for(
        lambda: datetime.now(UTC) >= ready_at,
        timeout=OWNER_CHECK_SECONDS + 5,
        interval=0.02,
        what="the workers' lists of synced users to be read again",
    )


# -- one synced user, both sides -----------------------------------------------------------------


@dataclass
class Both:
    """A synced user with a Sales Connect client and simple-salesforce logged in as them."""

    system: RunningSystem
    user: SyncedUser
    salesforce: Salesforce = field(init=False)

    def __post_init__(self) -> None:
        self.salesforce = self.user.salesforce()

    @property
    def salesconnect(self) -> SalesConnectClient:
        return self.system.salesconnect

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def owner_id(self) -> str:
        return self.user.salesforce_user_id

    # Salesforce, as the user --------------------------------------------------------------

    @property
    def tasks(self) -> SFType:
        """The Task sObject's REST resource, as the user."""
        return cast(SFType, self.salesforce.Task)

    def create_in_salesforce(self, subject: str, **values: Any) -> str:
        body = {"Subject": subject, "OwnerId": self.owner_id, **values}
        return str(self.tasks.create(body)["id"])

    def update_in_salesforce(self, task_id: str, **values: Any) -> None:
        self.tasks.update(task_id, values)

    def delete_in_salesforce(self, task_id: str) -> None:
        self.tasks.delete(task_id)

    def find_salesforce_task(self, task_id: str) -> dict[str, Any] | None:
        """The Task's fields (deleted ones too), or None when there is no such Task at all."""
        rows = self.salesforce.query_all(
            f"SELECT {SALESFORCE_FIELDS} FROM Task WHERE Id = '{task_id}'", include_deleted=True
        )["records"]
        return dict(rows[0]) if rows else None

    def salesforce_task(self, task_id: str) -> dict[str, Any]:
        """The Task's fields (deleted ones too); it must exist."""
        task = self.find_salesforce_task(task_id)
        assert task is not None, f"no Salesforce Task {task_id}, not even in the recycle bin"
        return task

    def salesforce_tasks_for(self, salesconnect_task_id: str) -> list[dict[str, Any]]:
        """Live Tasks carrying this Sales Connect task id."""
        rows = self.salesforce.query_all(
            f"SELECT {SALESFORCE_FIELDS} FROM Task "
            f"WHERE Sales_Connect_Id__c = '{salesconnect_task_id}'"
        )["records"]
        return [dict(row) for row in rows]

    def owned_salesforce_tasks(self) -> list[dict[str, Any]]:
        rows = self.salesforce.query_all(
            f"SELECT {SALESFORCE_FIELDS} FROM Task WHERE OwnerId = '{self.owner_id}'"
        )["records"]
        return [dict(row) for row in rows]

    def wait_pushed(self, salesconnect_task_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The Salesforce Task a Sales Connect task was pushed to, once it exists."""

        def pushed() -> dict[str, Any] | None:
            found = self.salesforce_tasks_for(salesconnect_task_id)
            return found[0] if found else None

        task: dict[str, Any] = wait_for(
            pushed, timeout=timeout, what=f"{salesconnect_task_id} to reach Salesforce"
        )
        return task

    def wait_salesforce(
        self, task_id: str, timeout: float = WAIT, **expected: Any
    ) -> dict[str, Any]:
        """The Task once its fields hold `expected`."""
        last: list[dict[str, Any] | None] = [None]

        def arrived() -> dict[str, Any] | None:
            task = self.find_salesforce_task(task_id)
            last[0] = task
            if task is not None and all(task.get(k) == v for k, v in expected.items()):
                return task
            return None

        try:
            result: dict[str, Any] = wait_for(
                arrived, timeout=timeout, what=f"Salesforce Task {task_id} to hold {expected}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {last[0]}") from None
        return result

    # Sales Connect, as the user ------------------------------------------------------------

    def create_in_salesconnect(
        self, name: str, due_date: str | None = "2026-12-01", **fields: Any
    ) -> TaskJson:
        return self.salesconnect.create_task(self.user_id, name, due_date, **fields)

    def salesconnect_task(self, task_id: str) -> TaskJson:
        return self.salesconnect.get_task(task_id, include_deleted=True)

    def linked_salesconnect_tasks(self, salesforce_task_id: str) -> list[TaskJson]:
        return self.salesconnect.list_tasks(
            self.user_id, salesforce_task_id=salesforce_task_id, include_deleted="true"
        )

    def live_salesconnect_tasks(self) -> list[TaskJson]:
        return self.salesconnect.list_tasks(self.user_id, limit=1000)

    def wait_imported(self, salesforce_task_id: str, timeout: float = WAIT) -> TaskJson:
        """The Sales Connect task linked to a Salesforce Task, once it exists."""

        def imported() -> TaskJson | None:
            found = self.linked_salesconnect_tasks(salesforce_task_id)
            return found[0] if found else None

        task: TaskJson = wait_for(
            imported, timeout=timeout, what=f"{salesforce_task_id} to reach Sales Connect"
        )
        return task

    def wait_salesconnect(self, task_id: str, timeout: float = WAIT, **expected: Any) -> TaskJson:
        """The task once its fields hold `expected` (`deleted=True/False` for its tombstone)."""
        last: list[TaskJson | None] = [None]

        def holds(task: Mapping[str, Any]) -> bool:
            for name, value in expected.items():
                actual = (task["deleted_at"] is not None) if name == "deleted" else task.get(name)
                if actual != value:
                    return False
            return True

        def arrived() -> TaskJson | None:
            task = self.salesconnect_task(task_id)
            last[0] = task
            return task if holds(task) else None

        try:
            result: TaskJson = wait_for(
                arrived, timeout=timeout, what=f"Sales Connect task {task_id} to hold {expected}"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {last[0]}") from None
        return result

    # pairs -----------------------------------------------------------------------------------

    def pair_from_salesconnect(
        self, name: str, due_date: str | None = "2026-12-01", **fields: Any
    ) -> tuple[TaskJson, str]:
        """A task made in Sales Connect, once pushed and linked: (the task, its Task id)."""
        task = self.create_in_salesconnect(name, due_date, **fields)
        pushed = self.wait_pushed(task["id"])
        linked = self.wait_salesconnect(task["id"], salesforce_task_id=pushed["Id"])
        return linked, str(pushed["Id"])

    def pair_from_salesforce(self, subject: str, **values: Any) -> tuple[TaskJson, str]:
        """A Task made in Salesforce, once imported: (the task, the Task id)."""
        task_id = self.create_in_salesforce(subject, **values)
        return self.wait_imported(task_id), task_id


def both_sides(system: RunningSystem, name: str = "Synced User", **user_options: Any) -> Both:
    """A fresh synced user whose first sync is done and whom the workers know."""
    return synced_users(system, 1, name, **user_options)[0]


def synced_users(
    system: RunningSystem, count: int, name: str = "Synced User", **user_options: Any
) -> list[Both]:
    """`count` fresh synced users at once (see `synced_users_each`)."""
    return synced_users_each(system, [(f"{name} {n}", user_options) for n in range(count)])


def synced_users_each(
    system: RunningSystem, wanted: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[Both]:
    """Fresh users, one per `(name, create_synced_user options)`, made at once: their first
    syncs run in the same poller cycles and one wait covers them all, so a batch costs about
    what one user costs."""
    made = [
        (system.create_synced_user(name, **{**options, "wait_first_sync": False}), options)
        for name, options in wanted
    ]
    for user, options in made:
        if options.get("sync", True):
            system.wait_first_sync(user.user_id)
    return [Both(system, user) for user, _ in made]


class UserPool:
    """Fresh synced users for the tests of one module's system, made a batch at a time."""

    def __init__(self, system: RunningSystem, batch: int = 4) -> None:
        self.system = system
        self.batch = batch
        self._ready: dict[tuple[tuple[str, Any], ...], list[Both]] = {}

    def take(
        self, name: str = "Synced User", *, batch: int | None = None, **user_options: Any
    ) -> Both:
        """A user no test had; `batch` overrides the pool's for users of a kind used once."""
        key = (("name", name), *sorted(user_options.items()))
        ready = self._ready.setdefault(key, [])
        if not ready:
            ready.extend(synced_users(self.system, batch or self.batch, name, **user_options))
        return ready.pop(0)


def salesconnect_missing(client: SalesConnectClient, task_id: str) -> bool:
    try:
        client.get_task(task_id, include_deleted=True)
    except SalesConnectError as exc:
        return exc.status == 404
    return False


def attempt_until(action: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    return wait_for(lambda: action() or True, timeout=timeout, what=what)
