"""The soak's simulated people: Sales Connect users and their Salesforce selves making random
creates, edits, completions, deletes and undeletes, sometimes the same task on both sides at
once, and a share of deliberately invalid changes.

Every write is recorded in the task's `TaskModel` with its stamp (bench.soak.model). Values are
made unique (a fresh token in every name and description, a date never used before) so a write
is never a no-op that the model would count and the systems would not, and so the bridge's
writes can be traced back to the user who made the value. Two-valued fields (status, priority)
are toggled from the value read just before.

A person does not touch a task while another action of theirs on it is under way, nor a
deleted task except to undelete it from the side that deleted it, a few seconds later; and
nobody touches a poisoned task again (its invalid change is parked, as it must be).

Salesforce faults the soak injects hit the people's own calls too: 503, UNABLE_TO_LOCK_ROW and
REQUEST_LIMIT_EXCEEDED have no effect, so a person retries them after a pause; an expired
session means logging in again.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any, Final, TypeVar

from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceResourceNotFound,
)

from bench.clients import SalesConnectUser, stamp_ms, task_object
from bench.soak.model import (
    Existence,
    Poison,
    Side,
    TaskModel,
    neutral_from_salesforce,
)
from bench.system import SyncedUser, System

T = TypeVar("T")

FORBIDDEN_WORD: Final = "FORBIDDEN"
VALIDATION_RULE: Final = {
    "name": "No_Forbidden_Subjects",
    "field": "Subject",
    "matches": FORBIDDEN_WORD,
    "message": f"Subjects may not say {FORBIDDEN_WORD}.",
}
DESCRIPTION_LIMIT: Final = 32_000
QUIET_SECONDS: Final = 4.0
STAMP_SLACK_MS: Final = 10
RETRYABLE_CODES: Final = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
)
FIRST_DATE: Final = date(2026, 12, 1)

# How often each action is chosen (the invalid ones come from `invalid_share`).
WEIGHTS: Final = {
    "sc_create": 8,
    "sc_edit": 18,
    "sc_complete": 6,
    "sc_delete": 3,
    "sc_restore": 3,
    "sf_create": 6,
    "sf_edit": 16,
    "sf_complete": 5,
    "sf_delete": 3,
    "sf_undelete": 3,
    "both_sides": 7,
}


class TaskGoneError(Exception):
    """The target changed under the person (a Task the bridge deleted or recreated)."""


class Unresolved(Exception):  # noqa: N818 - not an error: the action is skipped
    """The task has no id yet on the side the action needs (not synced yet)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _error_codes(exc: SalesforceError) -> set[str]:
    """The `errorCode`s of an error answer (simple-salesforce keeps the parsed JSON body)."""
    body: Any = exc.content
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return set()
    if isinstance(body, list):
        return {str(item.get("errorCode")) for item in body if isinstance(item, dict)}
    return set()


class People:
    """Per thread: a Sales Connect client; per thread and person: simple-salesforce."""

    def __init__(self, system: System, users: Sequence[SyncedUser]) -> None:
        self.system = system
        self.users = list(users)
        self.local = threading.local()

    def salesconnect(self) -> SalesConnectUser:
        api: SalesConnectUser | None = getattr(self.local, "salesconnect", None)
        if api is None:
            api = self.system.new_users_api()
            self.local.salesconnect = api
        return api

    def _salesforce(self, user_index: int) -> Salesforce:
        clients: dict[int, Salesforce] = getattr(self.local, "salesforce", None) or {}
        self.local.salesforce = clients
        if user_index not in clients:
            clients[user_index] = self.system.salesforce_as(self.users[user_index])
        return clients[user_index]

    def _forget(self, user_index: int) -> None:
        clients: dict[int, Salesforce] = getattr(self.local, "salesforce", None) or {}
        clients.pop(user_index, None)

    def salesforce_call(
        self, user_index: int, call: Callable[[Salesforce], T], *, patience: float = 180.0
    ) -> tuple[T, int, int]:
        """Run `call` as the person, retrying what the injected faults make fail (they have no
        effect); returns its result and the interval (ms) that holds its modification stamp."""
        deadline = time.monotonic() + patience
        pause = 0.2
        while True:
            try:
                salesforce = self._salesforce(user_index)
                low = now_ms()
                result = call(salesforce)
                return result, low - STAMP_SLACK_MS, now_ms() + STAMP_SLACK_MS
            except SalesforceExpiredSession:
                self._forget(user_index)
                continue
            except SalesforceResourceNotFound as exc:
                raise TaskGoneError(str(exc)) from exc
            except SalesforceError as exc:
                if not (_error_codes(exc) & RETRYABLE_CODES or exc.status == 503):
                    raise
            except Exception as exc:
                # A login refused by an injected fault, or a limit spell on the token call.
                if "REQUEST_LIMIT_EXCEEDED" not in str(exc) and "503" not in str(exc):
                    raise
                self._forget(user_index)
            if time.monotonic() > deadline:
                raise TimeoutError("Salesforce kept refusing a person's call")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


class Activity:
    """Picks actions at `rate` per second and runs them on a small thread pool."""

    def __init__(
        self,
        system: System,
        users: Sequence[SyncedUser],
        *,
        seed: int,
        rate: float,
        invalid_share: float,
        threads: int = 6,
    ) -> None:
        self.system = system
        self.users = list(users)
        self.people = People(system, users)
        self.rng = random.Random(seed)
        self.rate = rate
        self.invalid_share = invalid_share
        self.threads = threads
        self.lock = threading.Lock()
        self.models: list[TaskModel] = []
        self.done: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.failures: list[str] = []
        self._dates = 0
        self._tokens = 0
        self._keys = 0

    # -- values ---------------------------------------------------------------------------------

    def _token(self) -> str:
        with self.lock:
            self._tokens += 1
            return f"{self._tokens:06d}-{self.rng.getrandbits(24):06x}"

    def _date(self) -> str:
        """A due date no write has used before (so no write is a no-op)."""
        with self.lock:
            self._dates += 1
            return (FIRST_DATE + timedelta(days=self._dates)).isoformat()

    def _details(self) -> str:
        words = ("call", "email", "follow up", "quote", "demo", "renewal", "notes", "café")
        length = self.rng.randrange(0, 12)
        return f"{self._token()} " + " ".join(self.rng.choice(words) for _ in range(length))

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; waits for the actions under way before returning."""
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(self.threads, thread_name_prefix="soak-person") as pool:
            next_at = time.monotonic()
            while not stop.is_set():
                next_at += self.rng.expovariate(self.rate)
                delay = next_at - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                futures = [future for future in futures if not future.done()]
                if len(futures) >= 4 * self.threads:
                    continue  # the people are slower than the offered rate (a fault spell)
                choice = self._choose()
                if choice is not None:
                    name, model, action = choice
                    futures.append(pool.submit(self._run_action, name, model, action))
            for future in futures:
                future.result()

    def _run_action(self, name: str, model: TaskModel | None, action: Callable[[], None]) -> None:
        try:
            action()
            with self.lock:
                self.done[name] += 1
        except (Unresolved, TaskGoneError):
            with self.lock:
                self.skipped[name] += 1
        except Exception as exc:
            with self.lock:
                self.failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            if model is not None:
                with self.lock:
                    model.busy = False

    def _choose(self) -> tuple[str, TaskModel | None, Callable[[], None]] | None:
        if self.rng.random() < self.invalid_share:
            return self._choose_invalid()
        names = list(WEIGHTS)
        name = self.rng.choices(names, weights=[WEIGHTS[n] for n in names])[0]
        if name == "sc_create":
            return name, None, self.salesconnect_create
        if name == "sf_create":
            return name, None, self.salesforce_create
        now = time.monotonic()
        with self.lock:
            candidates = [m for m in self.models if not m.busy and m.poison is None]
            if name == "sc_restore":
                candidates = [
                    m
                    for m in candidates
                    if m.deleted_by is Side.SALESCONNECT and m.quiet_until <= now
                ]
            elif name == "sf_undelete":
                candidates = [
                    m
                    for m in candidates
                    if m.deleted_by is Side.SALESFORCE and m.quiet_until <= now and m.salesforce_id
                ]
            else:
                candidates = [m for m in candidates if not m.deleted and m.quiet_until <= now]
            if not candidates:
                return None
            model = self.rng.choice(candidates)
            model.busy = True
        actions: dict[str, Callable[[TaskModel], None]] = {
            "sc_edit": self.salesconnect_edit,
            "sc_complete": self.salesconnect_complete,
            "sc_delete": self.salesconnect_delete,
            "sc_restore": self.salesconnect_restore,
            "sf_edit": self.salesforce_edit,
            "sf_complete": self.salesforce_complete,
            "sf_delete": self.salesforce_delete,
            "sf_undelete": self.salesforce_undelete,
            "both_sides": self.both_sides,
        }
        act = actions[name]
        return name, model, lambda: act(model)

    def _choose_invalid(self) -> tuple[str, TaskModel | None, Callable[[], None]] | None:
        poison = self.rng.choice(list(Poison))
        if self.rng.random() < 0.5:
            return f"invalid_create_{poison.value}", None, lambda: self.invalid_create(poison)
        now = time.monotonic()
        with self.lock:
            candidates = [
                m
                for m in self.models
                if not m.busy
                and m.poison is None
                and not m.deleted
                and m.quiet_until <= now
                and m.salesconnect_id
                and m.salesforce_id
            ]
            if not candidates:
                return None
            model = self.rng.choice(candidates)
            model.busy = True
        return f"invalid_edit_{poison.value}", model, lambda: self.invalid_edit(model, poison)

    def _new_model(self, side: Side) -> TaskModel:
        with self.lock:
            self._keys += 1
            model = TaskModel(self._keys, self.rng.randrange(len(self.users)), side)
            model.busy = True
            return model

    def _made(self, model: TaskModel) -> None:
        """A task counts once its create succeeded (a failed create made nothing)."""
        with self.lock:
            self.models.append(model)

    # -- resolving ids --------------------------------------------------------------------------

    def salesconnect_id(self, model: TaskModel) -> str:
        if model.salesconnect_id:
            return model.salesconnect_id
        if not model.salesforce_id:
            raise Unresolved("no id on either side")
        user = self.users[model.user_index]
        found = self.people.salesconnect().tasks(
            user.user_id, salesforce_task_id=model.salesforce_id, include_deleted="true"
        )
        if not found:
            raise Unresolved("not imported yet")
        model.salesconnect_id = str(found[0]["id"])
        return model.salesconnect_id

    def salesforce_id(self, model: TaskModel) -> str:
        if model.salesforce_id:
            return model.salesforce_id
        task = self.people.salesconnect().task(self.salesconnect_id(model))
        if not task.get("salesforce_task_id"):
            raise Unresolved("not pushed yet")
        model.salesforce_id = str(task["salesforce_task_id"])
        return model.salesforce_id

    # -- Sales Connect --------------------------------------------------------------------------

    def _salesconnect_write(self, model: TaskModel, fields: dict[str, Any]) -> None:
        sent = now_ms()
        task = self.people.salesconnect().update_task(self.salesconnect_id(model), fields)
        stamp = stamp_ms(task["updated_at"])
        if stamp >= sent:  # otherwise it changed nothing, and so wrote nothing
            model.record(Side.SALESCONNECT, fields, stamp, stamp)

    def salesconnect_create(self, poison: Poison | None = None) -> None:
        model = self._new_model(Side.SALESCONNECT)
        try:
            token = self._token()
            name = f"soak {model.key} {token}"
            if self.rng.random() < 0.05:
                name = f"{name} {'long name ' * 30}".strip()  # over 255: the Subject is cut
            fields: dict[str, Any] = {
                "name": name,
                "details": self._details(),
                "due_date": self._date() if self.rng.random() < 0.9 else None,
                "priority": self.rng.choice(("normal", "high")),
                "status": "open" if self.rng.random() < 0.9 else "completed",
            }
            if poison is Poison.DETAILS_TOO_LONG:
                fields["details"] = "x" * self.rng.randrange(DESCRIPTION_LIMIT + 1, 33_000)
            elif poison is Poison.VALIDATION_RULE:
                fields["name"] = f"soak {model.key} {FORBIDDEN_WORD} {token}"
            user = self.users[model.user_index]
            task = self.people.salesconnect().create_task(
                user.user_id, fields, idempotency_key=f"soak-{model.key}-{token}"
            )
            stamp = stamp_ms(task["updated_at"])
            model.salesconnect_id = str(task["id"])
            model.record(Side.SALESCONNECT, fields, stamp, stamp)
            if poison is not None:
                model.poison, model.poisoned_create = poison, True
            self._made(model)
        finally:
            model.busy = False

    def salesconnect_edit(self, model: TaskModel) -> None:
        choice = self.rng.choice(("name", "details", "due_date", "priority", "details"))
        fields: dict[str, Any]
        if choice == "name":
            fields = {"name": f"soak {model.key} renamed {self._token()}"}
        elif choice == "details":
            fields = {"details": self._details()}
        elif choice == "due_date":
            fields = {"due_date": self._date()}
        else:
            current = self.people.salesconnect().task(self.salesconnect_id(model))
            fields = {"priority": "high" if current["priority"] == "normal" else "normal"}
        self._salesconnect_write(model, fields)

    def salesconnect_complete(self, model: TaskModel) -> None:
        current = self.people.salesconnect().task(self.salesconnect_id(model))
        self._salesconnect_write(
            model, {"status": "completed" if current["status"] == "open" else "open"}
        )

    def salesconnect_delete(self, model: TaskModel) -> None:
        low = now_ms()
        self.people.salesconnect().delete_task(self.salesconnect_id(model))
        model.existence.append(Existence(True, Side.SALESCONNECT, low, now_ms()))
        model.quiet_until = time.monotonic() + QUIET_SECONDS

    def salesconnect_restore(self, model: TaskModel) -> None:
        task = self.people.salesconnect().restore_task(self.salesconnect_id(model))
        stamp = stamp_ms(task["updated_at"])
        model.existence.append(Existence(False, Side.SALESCONNECT, stamp, stamp))
        model.salesforce_id = None  # the bridge makes a new Task: the old one is in the bin
        model.quiet_until = time.monotonic() + QUIET_SECONDS

    def invalid_create(self, poison: Poison) -> None:
        self.salesconnect_create(poison)

    def invalid_edit(self, model: TaskModel, poison: Poison) -> None:
        token = self._token()
        if poison is Poison.DETAILS_TOO_LONG:
            fields: dict[str, Any] = {
                "details": f"{token} " + "y" * self.rng.randrange(DESCRIPTION_LIMIT + 1, 33_000)
            }
        else:
            fields = {"name": f"soak {model.key} {FORBIDDEN_WORD} {token}"}
        sent = now_ms()
        task = self.people.salesconnect().update_task(self.salesconnect_id(model), fields)
        stamp = stamp_ms(task["updated_at"])
        if stamp < sent:
            raise RuntimeError("an invalid edit changed nothing")
        model.record(Side.SALESCONNECT, fields, stamp, stamp)
        model.poison = poison

    # -- Salesforce -----------------------------------------------------------------------------

    def salesforce_create(self) -> None:
        model = self._new_model(Side.SALESFORCE)
        try:
            user = self.users[model.user_index]
            values: dict[str, Any] = {
                "Subject": f"soak {model.key} {self._token()}",
                "Description": self._details(),
                "Priority": self.rng.choice(("Normal", "High")),
                "Status": "Not Started" if self.rng.random() < 0.9 else "Completed",
                "OwnerId": user.salesforce_user_id,
            }
            if self.rng.random() < 0.9:
                values["ActivityDate"] = self._date()
            result, low, high = self.people.salesforce_call(
                model.user_index, lambda sf: task_object(sf).create(values)
            )
            model.salesforce_id = str(result["id"])
            neutral = neutral_from_salesforce(values)
            neutral.setdefault("due_date", None)
            model.record(Side.SALESFORCE, neutral, low, high)
            self._made(model)
        finally:
            model.busy = False

    def _salesforce_write(self, model: TaskModel, values: dict[str, Any]) -> None:
        task_id = self.salesforce_id(model)
        try:
            _, low, high = self.people.salesforce_call(
                model.user_index, lambda sf: task_object(sf).update(task_id, values)
            )
        except TaskGoneError:
            model.salesforce_id = None
            raise
        model.record(Side.SALESFORCE, neutral_from_salesforce(values), low, high)

    def _salesforce_current(self, model: TaskModel) -> dict[str, Any]:
        task_id = self.salesforce_id(model)
        try:
            current, _, _ = self.people.salesforce_call(
                model.user_index, lambda sf: task_object(sf).get(task_id)
            )
        except TaskGoneError:
            model.salesforce_id = None
            raise
        return dict(current)

    def salesforce_edit(self, model: TaskModel) -> None:
        choice = self.rng.choice(("Description", "ActivityDate", "Priority", "Description"))
        values: dict[str, Any]
        if choice == "Description":
            values = {"Description": self._details()}
        elif choice == "ActivityDate":
            values = {"ActivityDate": self._date()}
        else:
            current = self._salesforce_current(model)
            values = {"Priority": "High" if current["Priority"] == "Normal" else "Normal"}
        self._salesforce_write(model, values)

    def salesforce_complete(self, model: TaskModel) -> None:
        current = self._salesforce_current(model)
        status = "Completed" if current["Status"] != "Completed" else "Not Started"
        self._salesforce_write(model, {"Status": status})

    def salesforce_delete(self, model: TaskModel) -> None:
        task_id = self.salesforce_id(model)
        try:
            _, low, high = self.people.salesforce_call(
                model.user_index, lambda sf: task_object(sf).delete(task_id)
            )
        except TaskGoneError:
            model.salesforce_id = None
            raise
        model.existence.append(Existence(True, Side.SALESFORCE, low, high))
        model.quiet_until = time.monotonic() + QUIET_SECONDS

    def salesforce_undelete(self, model: TaskModel) -> None:
        user = self.users[model.user_index]
        task_id = str(model.salesforce_id)
        low = now_ms() - STAMP_SLACK_MS
        self.system.admin.undelete(task_id, user.salesforce_user_id)
        model.existence.append(Existence(False, Side.SALESFORCE, low, now_ms() + STAMP_SLACK_MS))
        model.quiet_until = time.monotonic() + QUIET_SECONDS

    # -- both at once ---------------------------------------------------------------------------

    def both_sides(self, model: TaskModel) -> None:
        """The same task edited in Sales Connect and in Salesforce at the same moment: the
        same field half of the time, different fields otherwise."""
        self.salesconnect_id(model)
        self.salesforce_id(model)
        same_field = self.rng.random() < 0.5
        sc_fields: dict[str, Any] = (
            {"details": self._details()}
            if same_field
            else {"name": f"soak {model.key} renamed {self._token()}"}
        )
        sf_values: dict[str, Any] = (
            {"Description": self._details()} if same_field else {"ActivityDate": self._date()}
        )
        gate = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def salesforce_side() -> None:
            try:
                gate.wait()
                self._salesforce_write(model, sf_values)
            except BaseException as exc:
                errors.append(exc)

        helper = threading.Thread(target=salesforce_side, name="soak-both-sides")
        helper.start()
        gate.wait()
        try:
            self._salesconnect_write(model, sc_fields)
        finally:
            helper.join(200)
        if errors:
            raise errors[0]


def users_status(models: Sequence[TaskModel]) -> dict[str, int]:
    """How many tasks the people made, and where they stand."""
    return {
        "tasks": len(models),
        "created_in_salesconnect": sum(m.created_on is Side.SALESCONNECT for m in models),
        "created_in_salesforce": sum(m.created_on is Side.SALESFORCE for m in models),
        "deleted_at_end": sum(m.deleted for m in models),
        "poisoned": sum(m.poison is not None for m in models),
        "writes": sum(len(m.writes) for m in models),
    }
