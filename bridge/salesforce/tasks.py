"""Salesforce `Task` reads and writes the bridge makes, over simple-salesforce's REST calls.

Everything the sync needs and nothing more: upsert by the external id `Sales_Connect_Id__c`,
conditional update, delete, sObject Collections for backlogs (200 records a collection, and up
to five collections or queries in one Composite call, which Salesforce counts as one API call),
SOQL with paging, and the replication calls (`deleted/`). Records come back as `SalesforceTask`,
with stamps parsed to aware UTC datetimes and `ActivityDate` kept as its `YYYY-MM-DD` string, and
the moment the bridge asked for them (`read_at`), which says whether their stamp is settled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final, cast
from urllib.parse import urlencode

from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError, SalesforceGeneralError

from bridge.salesforce.session import SalesforceSession
from schemas.fields import format_utc_stamp, parse_utc_stamp

EXTERNAL_ID_FIELD: Final = "Sales_Connect_Id__c"
COLLECTION_LIMIT: Final = 200
# Salesforce's Composite resource takes at most 5 queries or sObject Collections a call.
COMPOSITE_PARTS: Final = 5
BULK_LIMIT: Final = COLLECTION_LIMIT * COMPOSITE_PARTS  # records one Composite call writes
TASK_FIELDS: Final = (
    "Id",
    "OwnerId",
    "Subject",
    "Status",
    "Priority",
    "ActivityDate",
    "Description",
    "TaskSubtype",
    "IsRecurrence",
    "IsDeleted",
    EXTERNAL_ID_FIELD,
    "CreatedById",
    "LastModifiedById",
    "LastModifiedDate",
    "SystemModstamp",
)
SOQL_TASK_FIELDS: Final = ", ".join(TASK_FIELDS)
# Salesforce compares `If-Unmodified-Since` with `LastModifiedDate` to the second, so a Task read
# within the second of its last change may change again, unseen, under the same stamp. A read
# that began this long after the start of that second has seen the second's last change (the
# margin allows for the bridge's clock running ahead of the org's).
STAMP_RESOLUTION: Final = timedelta(seconds=1)
CLOCK_MARGIN: Final = timedelta(milliseconds=250)


@dataclass(frozen=True)
class SalesforceTask:
    id: str
    owner_id: str
    subject: str | None
    status: str | None
    priority: str | None
    activity_date: str | None
    description: str | None
    task_subtype: str | None
    is_recurrence: bool
    is_deleted: bool
    sales_connect_id: str | None
    created_by_id: str | None
    last_modified_by_id: str | None
    last_modified_date: datetime
    system_modstamp: datetime
    read_at: datetime | None = field(default=None, compare=False)

    @property
    def settles_at(self) -> datetime:
        """When a read sees the last change `last_modified_date` can stand for."""
        second = self.last_modified_date.replace(microsecond=0)
        return second + STAMP_RESOLUTION + CLOCK_MARGIN

    @property
    def settled(self) -> bool:
        """Whether these values are the Task's at `last_modified_date` for good: a later change
        gets a later stamp, so `If-Unmodified-Since: last_modified_date` refuses it (412)."""
        return self.read_at is not None and self.read_at >= self.settles_at

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], *, read_at: datetime | None = None
    ) -> SalesforceTask:
        return cls(
            id=str(record["Id"]),
            owner_id=str(record["OwnerId"]),
            subject=record.get("Subject"),
            status=record.get("Status"),
            priority=record.get("Priority"),
            activity_date=record.get("ActivityDate"),
            description=record.get("Description"),
            task_subtype=record.get("TaskSubtype"),
            is_recurrence=bool(record.get("IsRecurrence")),
            is_deleted=bool(record.get("IsDeleted")),
            sales_connect_id=record.get(EXTERNAL_ID_FIELD),
            created_by_id=record.get("CreatedById"),
            last_modified_by_id=record.get("LastModifiedById"),
            last_modified_date=parse_utc_stamp(str(record["LastModifiedDate"])),
            system_modstamp=parse_utc_stamp(str(record["SystemModstamp"])),
            read_at=read_at,
        )

    def values(self) -> dict[str, object]:
        """The raw values by Task field name, as the mapping and audit trail read them."""
        return {
            "Subject": self.subject,
            "Status": self.status,
            "Priority": self.priority,
            "ActivityDate": self.activity_date,
            "Description": self.description,
            "TaskSubtype": self.task_subtype,
            "IsRecurrence": self.is_recurrence,
        }


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome in a write: its id, whether it was created, or its errors."""

    id: str | None
    success: bool
    created: bool = False
    errors: tuple[RecordError, ...] = ()


@dataclass(frozen=True)
class RecordError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.status_code}: {self.message}{where}"


@dataclass(frozen=True)
class DeletedWindow:
    deleted: tuple[tuple[str, datetime], ...]
    earliest_date_available: datetime | None
    latest_date_covered: datetime | None


class RecordChangedError(Exception):
    """The record changed since the stamp given with `If-Unmodified-Since` (HTTP 412)."""


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def soql_id_list(ids: Iterable[str]) -> str:
    return "(" + ", ".join(soql_quote(value) for value in ids) + ")"


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted), in UTC."""
    return format_utc_stamp(value)


def _record_result(raw: Mapping[str, Any]) -> RecordResult:
    return RecordResult(
        id=raw.get("id"),
        success=bool(raw.get("success")),
        created=bool(raw.get("created", False)),
        errors=tuple(
            RecordError(
                status_code=str(error.get("statusCode", "UNKNOWN")),
                message=str(error.get("message", "")),
                fields=tuple(error.get("fields") or ()),
            )
            for error in raw.get("errors") or ()
        ),
    )


class SalesforceTaskGateway:
    """Task operations through one renewing `SalesforceSession`; every call identifies tasksync."""

    def __init__(self, session: SalesforceSession) -> None:
        self.session = session

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.session.call_headers, **(extra or {})}

    def upsert(self, sales_connect_id: str, fields: Mapping[str, object]) -> RecordResult:
        """Create or update the Task whose external id is `sales_connect_id`; never two."""
        body = {key: value for key, value in fields.items() if key != EXTERNAL_ID_FIELD}

        def run(client: Salesforce) -> RecordResult:
            response = _task(client).upsert(
                f"{EXTERNAL_ID_FIELD}/{sales_connect_id}",
                body,
                raw_response=True,
                headers=self._headers(),
            )
            content = response.json() if response.content else {}
            return RecordResult(
                id=content.get("id"),
                success=True,
                created=response.status_code == 201 or bool(content.get("created")),
            )

        return self.session.call(run)

    def update(
        self,
        task_id: str,
        fields: Mapping[str, object],
        if_unmodified_since: datetime | None = None,
    ) -> None:
        """PATCH the Task; with a stamp, raise `RecordChangedError` if it changed since then."""
        headers = self._headers(
            {"If-Unmodified-Since": format_datetime(if_unmodified_since, usegmt=True)}
            if if_unmodified_since is not None
            else None
        )

        def run(client: Salesforce) -> None:
            try:
                _task(client).update(task_id, dict(fields), headers=headers)
            except SalesforceGeneralError as exc:
                if exc.status == 412:
                    raise RecordChangedError(task_id) from exc
                raise

        self.session.call(run)

    def delete(self, task_id: str) -> None:
        self.session.call(lambda client: _task(client).delete(task_id, headers=self._headers()))

    def get(self, task_id: str) -> SalesforceTask:
        read_at = datetime.now(UTC)
        record = self.session.call(
            lambda client: _task(client).get(task_id, headers=self._headers())
        )
        return SalesforceTask.from_record(record, read_at=read_at)

    def _composite(
        self, parts: Sequence[tuple[str, str, Mapping[str, Any] | None]]
    ) -> list[tuple[int, Any]]:
        """One Composite call of (method, path under /services/data/vNN.N/, body) subrequests,
        each standing alone (allOrNone false); each one's (status, body), in order."""

        def run(client: Salesforce) -> Any:
            base = f"/services/data/v{client.sf_version}/"
            payload = {
                "allOrNone": False,
                "compositeRequest": [
                    {
                        "method": method,
                        "url": base + path,
                        "referenceId": f"part{number}",
                        **({"body": body} if body is not None else {}),
                    }
                    for number, (method, path, body) in enumerate(parts)
                ],
            }
            return client.restful("composite", method="POST", json=payload, headers=self._headers())

        answer = self.session.call(run)
        responses = answer.get("compositeResponse") if isinstance(answer, Mapping) else None
        by_reference = {
            item.get("referenceId"): item for item in responses or () if isinstance(item, Mapping)
        }
        found = [by_reference.get(f"part{number}") for number in range(len(parts))]
        if any(item is None for item in found):
            raise SalesforceError("composite", 200, "composite", answer)
        return [(int(item["httpStatusCode"]), item.get("body")) for item in found if item]

    def _collections(
        self, method: str, path: str, chunks: Sequence[Sequence[Mapping[str, object]]]
    ) -> list[RecordResult]:
        """sObject Collections calls, one per chunk of at most 200 records; several chunks go
        five to a Composite call. `path` may hold `{ids}` for the chunk's ids (deletes)."""

        def part(chunk: Sequence[Mapping[str, object]]) -> tuple[str, Mapping[str, Any] | None]:
            if "{ids}" in path:
                return path.replace("{ids}", ",".join(str(r["Id"]) for r in chunk)), None
            records = [{"attributes": {"type": "Task"}, **record} for record in chunk]
            return path, {"allOrNone": False, "records": records}

        if len(chunks) == 1:
            only_path, payload = part(chunks[0])
            return self._collection(method, only_path, payload)
        results: list[RecordResult] = []
        for start in range(0, len(chunks), COMPOSITE_PARTS):
            group = chunks[start : start + COMPOSITE_PARTS]
            answers = self._composite([(method, *part(chunk)) for chunk in group])
            for chunk, (status, body) in zip(group, answers, strict=True):
                if status < 400 and isinstance(body, list) and len(body) == len(chunk):
                    results.extend(_record_result(item) for item in body)
                else:
                    failed = RecordResult(None, False, errors=_request_errors(body, status))
                    results.extend(failed for _ in chunk)
        return results

    def _collection(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> list[RecordResult]:
        def run(client: Salesforce) -> Any:
            return client.restful(path, method=method, json=payload, headers=self._headers())

        results = self.session.call(run)
        if not isinstance(results, list):
            raise SalesforceError(path, 200, "composite/sobjects", results)
        return [_record_result(item) for item in results]

    def upsert_many(self, records: Sequence[Mapping[str, object]]) -> list[RecordResult]:
        """Collections upsert on the external id; each record must carry `Sales_Connect_Id__c`.
        Up to `BULK_LIMIT` records, in one API call."""
        return self._collections(
            "PATCH", f"composite/sobjects/Task/{EXTERNAL_ID_FIELD}", _bulk_chunks(records)
        )

    def update_many(self, records: Sequence[Mapping[str, object]]) -> list[RecordResult]:
        """Collections update; each record must carry its `Id`. Up to `BULK_LIMIT` records,
        in one API call."""
        return self._collections("PATCH", "composite/sobjects", _bulk_chunks(records))

    def delete_many(self, task_ids: Sequence[str]) -> list[RecordResult]:
        """Up to `BULK_LIMIT` Tasks, in one API call."""
        return self._collections(
            "DELETE",
            "composite/sobjects?ids={ids}&allOrNone=false",
            _bulk_chunks([{"Id": task_id} for task_id in task_ids]),
        )

    def query(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of a SOQL query, following `nextRecordsUrl` page by page."""
        page: dict[str, Any] = self.session.call(
            lambda client: client.query(
                soql, include_deleted=include_deleted, headers=self._headers()
            )
        )
        while True:
            yield from page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self.session.call(self._next_page(str(next_url)))

    def _next_page(self, url: str) -> Callable[[Salesforce], dict[str, Any]]:
        def run(client: Salesforce) -> dict[str, Any]:
            return dict(client.query_more(url, identifier_is_url=True, headers=self._headers()))

        return run

    def tasks(self, soql_where: str, include_deleted: bool = False) -> Iterator[SalesforceTask]:
        soql = f"SELECT {SOQL_TASK_FIELDS} FROM Task WHERE {soql_where}"
        read_at = datetime.now(UTC)
        for record in self.query(soql, include_deleted=include_deleted):
            yield SalesforceTask.from_record(record, read_at=read_at)

    def tasks_by_id(self, task_ids: Sequence[str]) -> dict[str, SalesforceTask]:
        """Current values of these Tasks, deleted ones included: one query per 200 ids, and
        up to five such queries in one Composite call."""
        chunks = [
            task_ids[start : start + COLLECTION_LIMIT]
            for start in range(0, len(task_ids), COLLECTION_LIMIT)
        ]
        if len(chunks) <= 1:
            where = f"Id IN {soql_id_list(task_ids)}" if task_ids else None
            return {t.id: t for t in self.tasks(where, include_deleted=True)} if where else {}
        found: dict[str, SalesforceTask] = {}
        for start in range(0, len(chunks), COMPOSITE_PARTS):
            group = chunks[start : start + COMPOSITE_PARTS]
            read_at = datetime.now(UTC)
            queries = [
                f"SELECT {SOQL_TASK_FIELDS} FROM Task WHERE Id IN {soql_id_list(chunk)}"
                for chunk in group
            ]
            answers = self._composite(
                [("GET", f"queryAll?{urlencode({'q': query})}", None) for query in queries]
            )
            for query, (status, page) in zip(queries, answers, strict=True):
                if status >= 400 or not isinstance(page, Mapping):
                    raise SalesforceError("composite", status, "queryAll", page)
                records = list(page.get("records", []))
                if not page.get("done", True) and page.get("nextRecordsUrl"):
                    records = list(self.query(query, include_deleted=True))
                for record in records:
                    task = SalesforceTask.from_record(record, read_at=read_at)
                    found[task.id] = task
        return found

    def deleted_between(self, start: datetime, end: datetime) -> DeletedWindow:
        raw = self.session.call(
            lambda client: _task(client).deleted(start, end, headers=self._headers())
        )
        return DeletedWindow(
            deleted=tuple(
                (str(item["id"]), parse_utc_stamp(str(item["deletedDate"])))
                for item in raw.get("deletedRecords", [])
            ),
            earliest_date_available=_optional_stamp(raw.get("earliestDateAvailable")),
            latest_date_covered=_optional_stamp(raw.get("latestDateCovered")),
        )


def _task(client: Salesforce) -> SFType:
    return cast(SFType, client.Task)


def _optional_stamp(value: object) -> datetime | None:
    return parse_utc_stamp(str(value)) if value else None


def _bulk_chunks(records: Sequence[Mapping[str, object]]) -> list[Sequence[Mapping[str, object]]]:
    """Collections of at most 200 records, for 1 to `BULK_LIMIT` records in all."""
    if not 1 <= len(records) <= BULK_LIMIT:
        raise ValueError(f"bulk writes take 1 to {BULK_LIMIT} records a call")
    return [
        records[start : start + COLLECTION_LIMIT]
        for start in range(0, len(records), COLLECTION_LIMIT)
    ]


def _request_errors(body: object, status: int) -> tuple[RecordError, ...]:
    """A failed subrequest's error list (`[{"errorCode", "message", "fields"}]`) as the
    errors of each of its records."""
    errors = [item for item in body if isinstance(item, Mapping)] if isinstance(body, list) else []
    return tuple(
        RecordError(
            status_code=str(error.get("errorCode") or error.get("statusCode") or status),
            message=str(error.get("message", "")),
            fields=tuple(error.get("fields") or ()),
        )
        for error in errors
    ) or (RecordError(str(status), f"the subrequest failed with HTTP {status}"),)
