"""Hypothesis strategies for the message contract, shared by every test that needs messages."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, date, datetime

from hypothesis import strategies as st

from schemas.task_change import (
    NAME_MAX_LENGTH,
    ChangedFields,
    Op,
    Origin,
    Owner,
    RecordRef,
    TaskChange,
    TaskPriority,
    TaskStatus,
)

ALNUM = string.ascii_letters + string.digits

salesforce_ids = st.text(ALNUM, min_size=18, max_size=18)
salesconnect_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z")
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31))
stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond - d.microsecond % 1000))
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=NAME_MAX_LENGTH
)


@st.composite
def changed_fields(draw: st.DrawFn, name: st.SearchStrategy[str] = names) -> ChangedFields:
    values = {}
    if draw(st.booleans()):
        values["name"] = draw(name)
    if draw(st.booleans()):
        values["status"] = draw(st.sampled_from(TaskStatus))
    if draw(st.booleans()):
        values["priority"] = draw(st.sampled_from(TaskPriority))
    if draw(st.booleans()):
        values["due_date"] = draw(st.none() | dates)
    if draw(st.booleans()):
        values["details"] = draw(texts)
    return ChangedFields(**values)  # type: ignore[arg-type]


@st.composite
def task_changes(draw: st.DrawFn) -> TaskChange:
    origin = draw(st.sampled_from(Origin))
    op = draw(st.sampled_from(Op))
    sc_user, sf_user = draw(st.none() | salesconnect_ids), draw(st.none() | salesforce_ids)
    sc_task, sf_task = draw(st.none() | salesconnect_ids), draw(st.none() | salesforce_ids)
    if origin is Origin.SALESFORCE:
        sf_user, sf_task = sf_user or draw(salesforce_ids), sf_task or draw(salesforce_ids)
    else:
        sc_user, sc_task = sc_user or draw(salesconnect_ids), sc_task or draw(salesconnect_ids)
    scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
    return TaskChange(
        message_id=draw(st.uuids(version=4)) if draw(st.booleans()) else uuid.uuid4(),
        origin=origin,
        op=op,
        occurred_at=draw(stamps),
        actor=draw(st.text(ALNUM, min_size=1, max_size=64)),
        owner=Owner(salesconnect_user_id=sc_user, salesforce_user_id=sf_user),
        record=RecordRef(salesconnect_task_id=sc_task, salesforce_task_id=sf_task),
        trace_id=draw(st.text("0123456789abcdef", min_size=32, max_size=32)),
        changed=ChangedFields() if op is Op.DELETE else draw(changed_fields()),
        source_values=draw(
            st.dictionaries(st.text(ALNUM, min_size=1, max_size=40), scalars, max_size=8)
        ),
    )
