"""The fast path of `load_task_change` agrees with marshmallow, the contract's definition."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.task_change import (
    TaskChange,
    TaskChangeSchema,
    _fast_load,
    dump_task_change,
)
from tests.strategies import task_changes

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            1,
            1.0,
            True,
            "",
            "\n",
            "upsert\n",
            "2026-02-30",
            "2026-11-22\n",
            "0af7651916cd43dd8448eb211c80319c\n",
            "{6f1c2a7e-3d0b-4b8e-9a51-2f0d7c9e8b11}",
            "6f1c2a7e3d0b4b8e9a512f0d7c9e8b11",
            "2026-11-22T10:15:30.1234Z",
            "In Progress",
            "completed",
            "salesforce",
            "00T000000000001AAA",
        ]
    )
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(message: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix] if prefix else []
    if isinstance(message, dict):
        for key, value in message.items():
            found.extend(paths(value, (*prefix, key)))
    return found


def marshmallow_load(raw: Any) -> TaskChange | None:
    try:
        loaded: TaskChange = TaskChangeSchema().load(raw)
    except ValidationError:
        return None
    return loaded


def fast_load(raw: Any) -> TaskChange | None:
    try:
        return _fast_load(raw)
    except Exception:
        return None


@given(task_changes())
def test_every_valid_message_takes_the_fast_path_to_the_same_record(change: TaskChange) -> None:
    raw = dump_task_change(change)
    assert fast_load(raw) == change == marshmallow_load(raw)


@given(task_changes(), st.data())
def test_the_fast_path_never_accepts_what_marshmallow_rejects(
    change: TaskChange, data: st.DataObject
) -> None:
    raw = dump_task_change(change)
    mutated = copy.deepcopy(raw)
    path = data.draw(st.sampled_from(paths(raw)))
    target = mutated
    for key in path[:-1]:
        target = target[key]
    if data.draw(st.booleans()):
        target[path[-1]] = data.draw(json_values)
    else:
        target[data.draw(st.text(max_size=12))] = data.draw(json_values)
    accepted = fast_load(mutated)
    if accepted is not None:
        assert marshmallow_load(mutated) == accepted
