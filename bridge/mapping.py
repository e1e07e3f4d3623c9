"""The field mapping between Sales Connect reminder tasks and Salesforce `Task` records.

Pure rules from SPEC.md, no I/O. Producers turn Salesforce values into neutral `ChangedFields`
with `neutral_from_salesforce`; the to-Salesforce applier turns neutral fields into a Task body
with `salesforce_values`. Sales Connect already speaks the neutral field names.

* status and priority follow fixed tables; a Salesforce value outside them ("In Progress",
  "Low", custom values) is *not synced*: it yields no change at all, and a new import takes the
  Sales Connect default for that field.
* `ActivityDate` is a calendar date string; it is parsed with `date.fromisoformat` and written
  with `date.isoformat`, never through a datetime, so no process time zone can shift it.
* the Subject is rendered from the user's activity subject template; a Sales Connect rename
  reaches Salesforce only when the template contains `{{activity_subject}}`, and a Salesforce
  rename never flows back (only an import takes the Subject as the name).
* lengths are counted in UTF-16 code units, as Salesforce counts them, so an emoji-heavy text
  that fits here also fits there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from schemas.fields import parse_calendar_date
from schemas.task_change import UNSET, ChangedFields, TaskPriority, TaskStatus

SUBJECT_MAX_LENGTH: Final = 255
DESCRIPTION_MAX_LENGTH: Final = 32_000
ACTIVITY_SUBJECT_FIELD: Final = "activity_subject"
DEFAULT_SUBJECT_TEMPLATE: Final = "{{activity_subject}}"
UNTITLED_TASK_NAME: Final = "(no subject)"

STATUS_TO_SALESFORCE: Final[Mapping[TaskStatus, str]] = {
    TaskStatus.OPEN: "Not Started",
    TaskStatus.COMPLETED: "Completed",
}
STATUS_FROM_SALESFORCE: Final[Mapping[str, TaskStatus]] = {
    sf: neutral for neutral, sf in STATUS_TO_SALESFORCE.items()
}
PRIORITY_TO_SALESFORCE: Final[Mapping[TaskPriority, str]] = {
    TaskPriority.NORMAL: "Normal",
    TaskPriority.HIGH: "High",
}
PRIORITY_FROM_SALESFORCE: Final[Mapping[str, TaskPriority]] = {
    sf: neutral for neutral, sf in PRIORITY_TO_SALESFORCE.items()
}

SALESFORCE_FIELD: Final[Mapping[str, str]] = {
    "name": "Subject",
    "status": "Status",
    "priority": "Priority",
    "due_date": "ActivityDate",
    "details": "Description",
}
NEUTRAL_FIELD: Final[Mapping[str, str]] = {sf: neutral for neutral, sf in SALESFORCE_FIELD.items()}
MAPPED_SALESFORCE_FIELDS: Final = tuple(SALESFORCE_FIELD.values())

_DYNAMIC_FIELD: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LINE_BREAKS: Final = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")

SalesforceValue = str | None


class MappingError(ValueError):
    """A value the other side cannot take. Permanent: the change is parked with this reason."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def cut_to_utf16(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units, never splitting a character."""
    if utf16_length(text) <= limit:
        return text
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


def template_uses_name(template: str) -> bool:
    return any(m.group(1) == ACTIVITY_SUBJECT_FIELD for m in _DYNAMIC_FIELD.finditer(template))


def render_subject(template: str, name: str) -> str:
    """Activity Detail Customization for a reminder task's Subject.

    `{{activity_subject}}` is the task name; every other dynamic field (`{{activity_type}}`,
    `{{sales_campaign_name}}`, ...) has no value for a reminder task and renders empty. Each run
    of line breaks becomes one space (so words on two lines stay two words), and the result is
    cut to Salesforce's 255 characters.
    """
    rendered = _DYNAMIC_FIELD.sub(
        lambda m: name if m.group(1) == ACTIVITY_SUBJECT_FIELD else "", template
    )
    return cut_to_utf16(_LINE_BREAKS.sub(" ", rendered), SUBJECT_MAX_LENGTH)


def salesforce_values(
    changed: ChangedFields, *, subject_template: str, creating: bool
) -> dict[str, SalesforceValue]:
    """The Task fields to write for a Sales Connect change: only the fields that changed.

    On create the Subject is always rendered (a template without `{{activity_subject}}` still
    gives its free text); afterwards a rename only reaches Salesforce when the template uses the
    name. Raises `MappingError` for a value Salesforce would reject.
    """
    body: dict[str, SalesforceValue] = {}
    if changed.name is not UNSET and (creating or template_uses_name(subject_template)):
        body["Subject"] = render_subject(subject_template, changed.name) or None
    if changed.status is not UNSET:
        body["Status"] = STATUS_TO_SALESFORCE[changed.status]
    if changed.priority is not UNSET:
        body["Priority"] = PRIORITY_TO_SALESFORCE[changed.priority]
    if changed.due_date is not UNSET:
        body["ActivityDate"] = None if changed.due_date is None else changed.due_date.isoformat()
    if changed.details is not UNSET:
        if utf16_length(changed.details) > DESCRIPTION_MAX_LENGTH:
            raise MappingError(
                "details",
                f"Salesforce Description (Comments) holds at most {DESCRIPTION_MAX_LENGTH:,} "
                f"characters; this has {utf16_length(changed.details):,}",
            )
        body["Description"] = changed.details or None
    return body


def neutral_from_salesforce(
    values: Mapping[str, object],
    *,
    importing: bool,
    changed_fields: Iterable[str] | None = None,
) -> ChangedFields:
    """Neutral changes for a Salesforce Task's values.

    `changed_fields` names the Task fields that changed (all mapped fields when None, as for an
    import). `importing` is true when the task does not exist in Sales Connect yet: only then
    does the Subject become the name. Unmapped values yield no change for their field.
    """
    considered = set(MAPPED_SALESFORCE_FIELDS if changed_fields is None else changed_fields)
    result: dict[str, Any] = {}
    if importing and "Subject" in considered:
        subject = values.get("Subject")
        result["name"] = (
            subject if isinstance(subject, str) and subject.strip() else UNTITLED_TASK_NAME
        )
    if "Status" in considered:
        status = STATUS_FROM_SALESFORCE.get(str(values.get("Status")))
        if status is not None:
            result["status"] = status
    if "Priority" in considered:
        priority = PRIORITY_FROM_SALESFORCE.get(str(values.get("Priority")))
        if priority is not None:
            result["priority"] = priority
    if "ActivityDate" in considered:
        raw_date = values.get("ActivityDate")
        if raw_date is None:
            result["due_date"] = None
        elif isinstance(raw_date, str):
            try:
                result["due_date"] = parse_calendar_date(raw_date)
            except ValueError as exc:
                raise MappingError("ActivityDate", str(exc)) from None
        else:
            raise MappingError("ActivityDate", "must be a YYYY-MM-DD string or null")
    if "Description" in considered:
        description = values.get("Description")
        if description is not None and not isinstance(description, str):
            raise MappingError("Description", "must be a string or null")
        result["details"] = description or ""
    return ChangedFields(**result)


def is_syncable_salesforce_task(values: Mapping[str, object]) -> bool:
    """A plain to-do Task: not a logged email or call, not a recurring series' master."""
    return values.get("TaskSubtype") == "Task" and values.get("IsRecurrence") is not True
