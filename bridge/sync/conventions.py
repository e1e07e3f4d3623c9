"""The conventions producers and appliers share, so both sides name things the same way.

* Message ids are derived from what the source says, not drawn at random: the same feed entry
  or the same Salesforce modification always gets the same id, so a producer that publishes
  again after a crash, or the ingress and the poller seeing the same change, yield duplicates
  the ledger recognises.
* "Known values" (the ledger's fingerprints) are kept per system in that system's own terms:
  Salesforce Task field names with the raw REST values, Sales Connect neutral field names with
  their JSON values. Producers record what they publish; appliers record what they write; a
  value equal to the known one is no change (and, if the bridge wrote it, an echo).
* Field stamps for conflict resolution are kept under one key per task in both directions: the
  Sales Connect task id.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from bridge.ledger.records import SourceStamp
from bridge.mapping import MAPPED_SALESFORCE_FIELDS
from schemas.fields import format_utc_stamp
from schemas.task_change import NEUTRAL_FIELDS, ChangedFields, Op, TaskChange

if TYPE_CHECKING:
    from bridge.ledger import Ledger

# The known "deleted" state of a Salesforce Task, kept beside its field fingerprints: whoever
# deletes it (the applier) or sees it deleted (a producer) records True, whoever creates it or
# sees it live again records False, so a delete crosses once and an undelete is recognised.
DELETED_FIELD: Final = "IsDeleted"

# The stamp of a task's existence, claimed beside its field stamps by deletes and undeletes
# (never written anywhere): of a delete and an undelete of one task, the later one wins, even
# when a retry brings the earlier one to an applier last.
EXISTENCE_FIELD: Final = "@exists"

MESSAGE_ID_NAMESPACE: Final = uuid.UUID("4f1d7c2e-9a53-5b8e-b1d0-7ac3e6f09a11")


def salesconnect_message_id(seq: int) -> uuid.UUID:
    """The id of the message published for Sales Connect feed entry `seq`."""
    return uuid.uuid5(MESSAGE_ID_NAMESPACE, f"salesconnect:{seq}")


def salesforce_message_id(task_id: str, op: str, system_modstamp: datetime) -> uuid.UUID:
    """The id of the message for one observed state of a Salesforce Task."""
    return uuid.uuid5(
        MESSAGE_ID_NAMESPACE, f"salesforce:{task_id}:{op}:{format_utc_stamp(system_modstamp)}"
    )


def new_trace_id() -> str:
    return uuid.uuid4().hex


def stamp_key(salesconnect_task_id: str) -> str:
    """The record key of a task's per-field stamps in the ledger, the same both ways."""
    return f"salesconnect:{salesconnect_task_id}"


def unpaired_stamp_key(salesforce_task_id: str) -> str:
    """The record key of the existence stamp of a Salesforce Task that has no Sales Connect
    task yet: an import and a delete of it that reach the applier out of order still agree."""
    return f"salesforce:{salesforce_task_id}"


def create_intent_key(salesconnect_task_id: str) -> str:
    """The record id under which the to-salesforce applier keeps the values of a Task it is
    about to create, before it knows the Task's id: if it is killed after Salesforce made the
    Task but before it recorded the Task's values, the producers take these for the known
    values of the Task whose `Sales_Connect_Id__c` names this task, so the bridge's own create
    is not published back as a Salesforce change."""
    return f"create:{salesconnect_task_id}"


def salesforce_known_values(values: Mapping[str, object]) -> dict[str, object]:
    """The mapped Task fields, raw, as Salesforce returns them (blank text is null there)."""
    return {
        name: (values.get(name) or None) if name != "ActivityDate" else values.get(name)
        for name in MAPPED_SALESFORCE_FIELDS
        if name in values
    }


def salesconnect_known_values(changed: ChangedFields | Mapping[str, object]) -> dict[str, object]:
    """Neutral field values as the Sales Connect API writes them in JSON."""
    present = changed.present() if isinstance(changed, ChangedFields) else dict(changed)
    return {
        name: _json_value(value) if not (name == "details" and value is None) else ""
        for name, value in present.items()
        if name in NEUTRAL_FIELDS
    }


def _json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    return value


def stamp_claims(changes: Iterable[TaskChange]) -> list[tuple[str, SourceStamp, list[str]]]:
    """The field stamps a producer claims for its messages before publishing them.

    Claiming before the message leaves means a change from the other side that is older, and
    applied while this one is still on its way, already loses: without it, the older value
    could be written over the newer one at its source and never be corrected. Only changes of
    tasks known to Sales Connect have a stamp key; an import has nothing to conflict with.
    Deletes and undeletes claim the task's existence (`EXISTENCE_FIELD`).
    """
    return [
        (stamp_key(change.record.salesconnect_task_id), SourceStamp.of(change), fields)
        for change in changes
        if change.record.salesconnect_task_id and (fields := claimed_fields(change))
    ]


def existence_won(ledger: Ledger, record_key: str, change: TaskChange) -> bool:
    """Claim the existence of the task under `record_key` (`stamp_key`, or `unpaired_stamp_key`)
    for a delete or undelete; False when a later one holds it (the appliers then skip the
    change). Deletes claim it even when they find nothing to delete."""
    claim = ledger.claim_fields(record_key, SourceStamp.of(change), [EXISTENCE_FIELD])
    return EXISTENCE_FIELD in claim.won


def created_too_late(stamps: Mapping[str, SourceStamp], change: TaskChange) -> bool:
    """Whether a delete or undelete later than the create `change` holds the task's existence
    (`stamps`: the task's field stamps): a create that waited in a retry tier while the delete
    after it was applied then makes nothing. Creates only look and never claim, so a delete
    stamped before the create (another system's clock, a Salesforce delete found only when
    sync is turned on again) still wins over it."""
    held = stamps.get(EXISTENCE_FIELD)
    return held is not None and held.order_key() > SourceStamp.of(change).order_key()


def claimed_fields(change: TaskChange) -> list[str]:
    """The stamps a change claims: its changed fields, and its task's existence when it
    deletes or undeletes."""
    fields = [] if change.op is Op.DELETE else list(change.changed.present())
    if change.op in (Op.DELETE, Op.UNDELETE):
        fields.append(EXISTENCE_FIELD)
    return fields
