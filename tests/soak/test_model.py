"""The soak's model of what the users did: which final values it accepts, and how it traces the
bridge's writes back to their source. Pure logic, no servers."""

from __future__ import annotations

from bench.soak.chaos import schedule
from bench.soak.model import (
    Existence,
    Poison,
    Side,
    TaskModel,
    echo_violations,
    field_violations,
    neutral_from_salesforce,
)


def model(**kwargs: object) -> TaskModel:
    task = TaskModel(key=1, user_index=0, created_on=Side.SALESCONNECT, salesconnect_id="tsk_1")
    for name, value in kwargs.items():
        setattr(task, name, value)
    return task


def test_the_latest_write_is_the_only_acceptable_value() -> None:
    task = model()
    task.record(Side.SALESCONNECT, {"details": "first"}, 1000, 1000)
    task.record(Side.SALESFORCE, {"details": "second"}, 2000, 2100)
    assert task.acceptable() == {"details": {"second"}}
    assert field_violations(task, {"details": "second"}) == []
    [violation] = field_violations(task, {"details": "first"})
    assert violation.kind == "lost"
    assert "details" in violation.message


def test_writes_whose_stamps_may_overlap_are_both_acceptable() -> None:
    task = model()
    task.record(Side.SALESFORCE, {"details": "from salesforce"}, 1000, 1300)
    task.record(Side.SALESCONNECT, {"details": "from salesconnect"}, 1200, 1200)
    assert task.acceptable() == {"details": {"from salesforce", "from salesconnect"}}


def test_a_salesforce_write_may_carry_the_stamp_of_the_next_one_to_its_task() -> None:
    """Seen only with the Task's next modification, it gets that modification's stamp."""
    task = model()
    task.record(Side.SALESFORCE, {"due_date": "2027-02-15"}, 1000, 1100)
    task.record(Side.SALESCONNECT, {"due_date": "2027-02-28"}, 2000, 2000)
    assert task.acceptable() == {"due_date": {"2027-02-28"}}
    task.record(Side.SALESFORCE, {"status": "completed"}, 3000, 3100)
    assert task.acceptable()["due_date"] == {"2027-02-15", "2027-02-28"}
    task.record(Side.SALESCONNECT, {"due_date": "2027-03-01"}, 4000, 4000)
    assert task.acceptable()["due_date"] == {"2027-03-01"}


def test_writes_before_a_delete_or_undelete_are_left_to_verify() -> None:
    task = model()
    task.record(Side.SALESCONNECT, {"details": "swallowed by the delete"}, 1000, 1000)
    task.existence.append(Existence(True, Side.SALESFORCE, 1100, 1200))
    task.existence.append(Existence(False, Side.SALESFORCE, 5000, 5100))
    assert task.acceptable() == {}
    task.record(Side.SALESCONNECT, {"priority": "high"}, 6000, 6000)
    assert task.acceptable() == {"priority": {"high"}}


def test_deleted_tasks_must_be_deleted_and_live_ones_live() -> None:
    deleted = model(existence=[Existence(True, Side.SALESCONNECT, 1, 2)])
    assert field_violations(deleted, None) == []
    assert field_violations(deleted, {"deleted_at": "2026-11-22T10:00:00.000Z"}) == []
    assert [v.kind for v in field_violations(deleted, {"details": ""})] == ["lost"]
    assert [v.kind for v in field_violations(model(), None)] == ["lost"]


def test_poisoned_tasks_are_not_compared_field_by_field() -> None:
    task = model(poison=Poison.DETAILS_TOO_LONG)
    task.record(Side.SALESCONNECT, {"details": "x" * 33_000}, 1, 1)
    assert field_violations(task, {"details": "something else"}) == []


def test_salesforce_values_map_to_what_sales_connect_holds() -> None:
    assert neutral_from_salesforce(
        {"Subject": "Call", "Status": "Completed", "Priority": "High", "Description": None}
    ) == {"name": "Call", "status": "completed", "priority": "high", "details": ""}


def test_a_bridge_write_of_a_value_only_sales_connect_users_wrote_is_an_echo() -> None:
    task = model()
    task.record(Side.SALESCONNECT, {"details": "mine"}, 1, 1)
    task.record(Side.SALESFORCE, {"details": "theirs"}, 2, 3)

    def entry(seq: int, changed: dict[str, str]) -> dict[str, object]:
        return {"seq": seq, "task_id": "tsk_1", "op": "task_updated", "changed": changed}

    echo, applied = entry(9, {"details": "mine"}), entry(8, {"details": "theirs"})
    link = entry(7, {"salesforce_task_id": "00T"})
    violations, traced = echo_violations([task], [echo, applied, link])
    assert traced == 1
    assert [v.kind for v in violations] == ["echo"]
    assert "seq 9" in violations[0].message


def test_the_fault_schedule_is_the_same_for_the_same_seed() -> None:
    first, again, other = schedule(7, 180), schedule(7, 180), schedule(8, 180)
    assert first == again
    assert first != other
    kinds = {event.kind for event in first}
    assert {"kill", "start", "broker_stop", "broker_start", "faults", "expire_sessions"} <= kinds
    assert all(0 <= event.at < 180 for event in first)
    limit_spells = [e for e in first if e.faults.get("request_limit_share") == 1.0]
    assert len(limit_spells) == 1
