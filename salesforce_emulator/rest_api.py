"""The Salesforce REST API resources under `/services/data/vNN.N/`, for an authenticated caller.

sObject Rows (`sobjects/Task/{id}`), Rows by External ID (upsert on `Sales_Connect_Id__c`),
describe, Get Updated / Get Deleted, query and queryAll with paging, sObject Collections and
limits: each answers with the status codes, body shapes and errors of a real org. Faults, API
usage and statistics are applied around this by `app.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from salesforce_emulator import composite, ids, soql
from salesforce_emulator.cursors import QueryCursors
from salesforce_emulator.errors import ApiError, not_found, record_error
from salesforce_emulator.faults import FaultPlan
from salesforce_emulator.http_server import Request, Response
from salesforce_emulator.org import Actor, Org
from salesforce_emulator.records import all_or_none_flag, parse_json_body
from salesforce_emulator.replies import api_error_reply, json_reply, no_content
from salesforce_emulator.sobjects import (
    EXTERNAL_ID_FIELD,
    SOBJECTS,
    TASK,
    SObjectSpec,
    sobject,
)
from salesforce_emulator.stamps import (
    MILLIS_PER_DAY,
    MILLIS_PER_MINUTE,
    floor_day,
    floor_minute,
    format_http_date,
    format_instant,
    now_ms,
    parse_http_date,
    parse_instant,
)
from salesforce_emulator.usage import DailyApiUsage

DEFAULT_BATCH_SIZE: Final = 2000
MIN_BATCH_SIZE: Final = 200
MAX_COLLECTION_RECORDS: Final = 200
UPDATED_REACH_DAYS: Final = 30
DELETED_REACH_DAYS: Final = 15
UPSERT_BODY_SINCE_VERSION: Final = 46.0
_ROLLED_BACK: Final = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header",
    "fields": [],
}
_OFFSET_SPACE: Final = re.compile(r" (\d{2}:?\d{2})$")


class RolledBackError(Exception):
    """An allOrNone collection with a failure: undo every record, then answer `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__("allOrNone collection rolled back")
        self.response = response


def method_not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError(
        405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
    )


class RestApi:
    """Answers one authenticated REST call."""

    def __init__(
        self, org: Org, cursors: QueryCursors, usage: DailyApiUsage, faults: FaultPlan
    ) -> None:
        self.org = org
        self.cursors = cursors
        self.usage = usage
        self.faults = faults

    def handle(self, request: Request, version: str, segments: list[str], actor: Actor) -> Response:
        if not segments:
            return self._only(request, "GET", lambda: json_reply(200, self._resources(version)))
        head, rest = segments[0], segments[1:]
        if head == "sobjects":
            return self._sobjects(request, version, rest, actor)
        if head in ("query", "queryAll"):
            return self._only(request, "GET", lambda: self._query(request, version, head, rest))
        if head == "composite":
            return self._composite_resource(request, version, rest, actor)
        if head == "limits" and not rest:
            return self._only(request, "GET", lambda: json_reply(200, self._limits()))
        raise not_found()

    @staticmethod
    def _only(request: Request, method: str, answer: Callable[[], Response]) -> Response:
        if request.method not in (method, "HEAD"):
            raise method_not_allowed(request.method, f"HEAD,{method}")
        return answer()

    # -- discovery ---------------------------------------------------------------------------

    @staticmethod
    def _resources(version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        return {
            name: f"{base}/{path}"
            for name, path in (
                ("sobjects", "sobjects"),
                ("query", "query"),
                ("queryAll", "queryAll"),
                ("composite", "composite"),
                ("limits", "limits"),
            )
        }

    def _composite_resource(
        self, request: Request, version: str, rest: list[str], actor: Actor
    ) -> Response:
        if rest[:1] == ["sobjects"]:
            return self._collections(request, version, rest[1:], actor)
        if rest:
            raise not_found()
        if request.method in ("GET", "HEAD"):
            base = f"/services/data/v{version}/composite"
            return json_reply(200, {"sobjects": f"{base}/sobjects"})
        if request.method != "POST":
            raise method_not_allowed(request.method, "HEAD,GET,POST")
        return self._composite(request, actor)

    def _composite(self, request: Request, actor: Actor) -> Response:
        all_or_none, subrequests = composite.parse(request.body)

        def call(sub: Request, version: str, segments: list[str]) -> Response:
            """One subrequest in its own savepoint, rolled back when it fails."""
            try:
                with self.org.store.transaction():
                    response = self.handle(sub, version, segments, actor)
                    if response.status >= 400:
                        raise RolledBackError(response)
                    return response
            except RolledBackError as rolled_back:
                return rolled_back.response
            except ApiError as error:
                return api_error_reply(error)

        try:
            answers = composite.run(request, all_or_none, subrequests, call)
        except composite.RolledBackCompositeError as rolled_back:
            raise RolledBackError(
                json_reply(200, {"compositeResponse": rolled_back.response})
            ) from None
        return json_reply(200, {"compositeResponse": answers})

    def _limits(self) -> dict[str, Any]:
        limit = self.faults.settings.daily_api_limit
        return {
            "DailyApiRequests": {
                "Max": limit,
                "Remaining": max(0, limit - self.usage.used()),
            }
        }

    # -- sObjects ----------------------------------------------------------------------------

    def _sobjects(self, request: Request, version: str, rest: list[str], actor: Actor) -> Response:
        if not rest:
            return self._only(
                request,
                "GET",
                lambda: json_reply(
                    200,
                    {
                        "encoding": "UTF-8",
                        "maxBatchSize": MAX_COLLECTION_RECORDS,
                        "sobjects": [s.global_describe(version) for s in SOBJECTS.values()],
                    },
                ),
            )
        spec = sobject(rest[0])
        if spec is None:
            raise not_found()
        if len(rest) == 1:
            return self._sobject_root(request, version, spec, actor)
        if len(rest) == 2 and rest[1] == "describe":
            return self._only(
                request,
                "GET",
                lambda: json_reply(
                    200,
                    spec.describe(
                        version,
                        overrides={
                            EXTERNAL_ID_FIELD: {
                                "unique": self.org.external_id_options.unique,
                                "caseSensitive": self.org.external_id_options.case_sensitive,
                            }
                        },
                    ),
                ),
            )
        if len(rest) == 2 and rest[1] in ("updated", "deleted"):
            return self._only(request, "GET", lambda: self._replication(request, spec, rest[1]))
        if len(rest) == 2:
            return self._row(request, version, spec, rest[1], actor)
        if len(rest) == 3:
            return self._by_external_id(
                request, version, spec, field_name=rest[1], value=rest[2], actor=actor
            )
        raise not_found()

    def _sobject_root(
        self, request: Request, version: str, spec: SObjectSpec, actor: Actor
    ) -> Response:
        if request.method in ("GET", "HEAD"):
            return json_reply(
                200, {"objectDescribe": spec.global_describe(version), "recentItems": []}
            )
        if request.method != "POST":
            raise method_not_allowed(request.method, "HEAD,GET,POST")
        self._writable(spec)
        document, text = parse_json_body(request.body)
        row = self.org.create_task(document, text, actor)
        return json_reply(201, {"id": row["Id"], "success": True, "errors": []})

    @staticmethod
    def _writable(spec: SObjectSpec) -> None:
        if not spec.createable:
            raise ApiError(
                400,
                "INSUFFICIENT_ACCESS_OR_READONLY",
                f"insufficient access rights: {spec.name} records are read-only through the "
                "API in the emulator (users are managed with /_emulator/users)",
                [],
            )

    def _read_row(self, spec: SObjectSpec, record_id: str) -> dict[str, Any]:
        if spec is TASK:
            return self.org.live_task(record_id)
        normalised = ids.normalise_id(record_id)
        row = (
            self.org.store.row(f'SELECT * FROM "{spec.name}" WHERE Id = ?', (normalised,))
            if normalised
            else None
        )
        if row is None:
            raise not_found()
        return row

    def _record_reply(
        self, request: Request, version: str, spec: SObjectSpec, row: Mapping[str, Any]
    ) -> Response:
        names = spec.field_names
        wanted = request.param("fields")
        if wanted:
            resolved = []
            for name in (part.strip() for part in wanted.split(",") if part.strip()):
                found = spec.get_field(name)
                if found is None:
                    raise ApiError(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on entity '{spec.name}'. If you are attempting "
                        "to use a custom field, be sure to append the '__c' after the custom field "
                        "name. Please reference your WSDL or the describe call for the appropriate "
                        "names.",
                    )
                resolved.append(found.name)
            names = tuple(dict.fromkeys([*resolved, "Id"]))
        headers = {"Last-Modified": format_http_date(row["LastModifiedDate"])}
        return json_reply(200, spec.row_to_json(row, version, names), headers)

    def _row(
        self, request: Request, version: str, spec: SObjectSpec, key: str, actor: Actor
    ) -> Response:
        field = spec.get_field(key)
        if field is not None and (field.external_id or field.name == "Id"):
            if request.method == "POST" and field.name == "Id":
                return self._sobject_root(request, version, spec, actor)
            raise method_not_allowed(request.method, "HEAD,GET,POST")
        record_id = ids.normalise_id(key)
        if record_id is None:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {key}"
            )
        if ids.key_prefix(record_id) != spec.key_prefix:
            raise not_found()
        if request.method in ("GET", "HEAD"):
            return self._record_reply(request, version, spec, self._read_row(spec, record_id))
        if request.method == "PATCH":
            self._writable(spec)
            document, text = parse_json_body(request.body)
            self.org.update_task(
                record_id,
                document,
                text,
                actor,
                unmodified_since_ms=_unmodified_since(request),
            )
            return no_content()
        if request.method == "DELETE":
            self._writable(spec)
            self.org.delete_task(record_id, actor)
            return no_content()
        raise method_not_allowed(request.method, "HEAD,GET,PATCH,DELETE")

    def _by_external_id(
        self,
        request: Request,
        version: str,
        spec: SObjectSpec,
        *,
        field_name: str,
        value: str,
        actor: Actor,
    ) -> Response:
        field = spec.get_field(field_name)
        if field is None or not (field.external_id or field.name == "Id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        if request.method == "PATCH":
            self._writable(spec)
            document, text = parse_json_body(request.body)
            row, created = self.org.upsert_task(
                field.name,
                value,
                document,
                text,
                actor,
                version=version,
                update_only=(request.param("updateOnly") or "").lower() == "true",
                unmodified_since_ms=_unmodified_since(request),
            )
            if not created and float(version) < UPSERT_BODY_SINCE_VERSION:
                return no_content()
            body: dict[str, Any] = {"id": row["Id"], "success": True, "errors": []}
            if float(version) >= UPSERT_BODY_SINCE_VERSION:
                body["created"] = created
            return json_reply(201 if created else 200, body)
        if field.name == "Id":
            return self._row(request, version, spec, value, actor)
        matches = self.org.tasks_by_external_id(value) if spec is TASK else []
        if len(matches) > 1:
            urls = [spec.attributes(m["Id"], version)["url"] for m in matches]
            return json_reply(300, urls)
        if not matches:
            raise not_found()
        if request.method in ("GET", "HEAD"):
            return self._record_reply(request, version, spec, matches[0])
        if request.method == "DELETE":
            self.org.delete_task(matches[0]["Id"], actor)
            return no_content()
        raise method_not_allowed(request.method, "HEAD,GET,PATCH,DELETE")

    # -- replication -------------------------------------------------------------------------

    def _replication(self, request: Request, spec: SObjectSpec, kind: str) -> Response:
        if spec is not TASK:
            raise ApiError(
                400,
                "INVALID_TYPE",
                f"The emulator replicates Task records only, not {spec.name}",
            )
        now = now_ms()
        start = _replication_date(request, "start")
        end = _replication_date(request, "end")
        if end - start < MILLIS_PER_MINUTE:
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        reach = UPDATED_REACH_DAYS if kind == "updated" else DELETED_REACH_DAYS
        if start < floor_day(now) - reach * MILLIS_PER_DAY:
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate can not be more than {reach} days ago",
            )
        covered = max(start, min(end, floor_minute(now)))
        if kind == "updated":
            return json_reply(
                200,
                {
                    "ids": self.org.updated_ids(start, covered),
                    "latestDateCovered": format_instant(covered),
                },
            )
        return json_reply(
            200,
            {
                "deletedRecords": [
                    {"id": record_id, "deletedDate": format_instant(deleted)}
                    for record_id, deleted in self.org.deleted_records(start, covered)
                ],
                "earliestDateAvailable": format_instant(floor_minute(self.org.earliest_deleted_ms)),
                "latestDateCovered": format_instant(covered),
            },
        )

    # -- queries -----------------------------------------------------------------------------

    def _query(self, request: Request, version: str, endpoint: str, rest: list[str]) -> Response:
        if rest:
            page, total, _, following = self.cursors.page(rest[0], endpoint)
            return json_reply(200, _query_page(version, endpoint, page, total, following))
        text = request.param("q")
        if text is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query = soql.parse(text, now=now_ms())
        include_deleted = endpoint == "queryAll"
        sql, params = query.to_sql(include_deleted=include_deleted)
        if query.count_only:
            found = self.org.store.row(sql, params)
            return json_reply(
                200, {"totalSize": found["total"] if found else 0, "done": True, "records": []}
            )
        names = query.field_names
        records = [
            query.sobject.row_to_json(row, version, names)
            for row in self.org.store.rows(sql, params)
        ]
        batch = _batch_size(request)
        following = None
        if len(records) > batch:
            locator = self.cursors.open(records, batch, endpoint)
            following = f"{locator}-{batch}"
        return json_reply(
            200, _query_page(version, endpoint, records[:batch], len(records), following)
        )

    # -- sObject Collections -----------------------------------------------------------------

    def _collections(
        self, request: Request, version: str, rest: list[str], actor: Actor
    ) -> Response:
        if not rest:
            if request.method == "POST":
                return self._collection_save(request, actor, creating=True)
            if request.method == "PATCH":
                return self._collection_save(request, actor, creating=False)
            if request.method == "DELETE":
                return self._collection_delete(request, actor)
            raise method_not_allowed(request.method, "POST,PATCH,DELETE")
        spec = sobject(rest[0])
        if spec is None:
            raise not_found()
        if len(rest) == 1:
            return self._only(request, "GET", lambda: self._collection_get(request, version, spec))
        if len(rest) == 2 and request.method == "PATCH":
            return self._collection_upsert(request, version, spec, rest[1], actor)
        if len(rest) == 2:
            raise method_not_allowed(request.method, "PATCH")
        raise not_found()

    @staticmethod
    def _collection_body(request: Request) -> tuple[bool, list[Mapping[str, Any]], str]:
        document, text = parse_json_body(request.body)
        if not isinstance(document, Mapping) or not isinstance(document.get("records"), list):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                'The request body must be {"allOrNone": <boolean>, "records": [<sObject>, ...]}',
            )
        all_or_none = all_or_none_flag(document)
        records = document["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            raise _too_many()
        for record in records:
            if not isinstance(record, Mapping):
                raise ApiError(400, "JSON_PARSER_ERROR", "Each of records must be an sObject")
            attributes = record.get("attributes")
            if not isinstance(attributes, Mapping) or not isinstance(attributes.get("type"), str):
                raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        return all_or_none, records, text

    def _collection_save(self, request: Request, actor: Actor, *, creating: bool) -> Response:
        all_or_none, records, text = self._collection_body(request)

        def save(record: Mapping[str, Any]) -> dict[str, Any]:
            _task_record(record)
            record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
            if creating:
                if record_id is not None:
                    raise record_error(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        "cannot specify Id in an insert call",
                        ["Id"],
                    )
                row = self.org.create_task(record, text, actor)
                return {"id": row["Id"], "success": True, "errors": []}
            if not isinstance(record_id, str) or not record_id:
                raise record_error("MISSING_ARGUMENT", "Id not specified in an update call", [])
            normalised = ids.normalise_id(record_id)
            if normalised is None or ids.key_prefix(normalised) != TASK.key_prefix:
                raise record_error("MALFORMED_ID", f"malformed id {record_id}", [])
            self.org.update_task(normalised, record, text, actor)
            return {"id": normalised, "success": True, "errors": []}

        return _run_collection(self.org, records, save, all_or_none)

    def _collection_upsert(
        self, request: Request, version: str, spec: SObjectSpec, field_name: str, actor: Actor
    ) -> Response:
        field = spec.get_field(field_name)
        if field is None or not field.external_id:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        all_or_none, records, text = self._collection_body(request)
        values = [
            next((v for k, v in record.items() if k.lower() == field.name.lower()), None)
            for record in records
        ]
        keys = [self.org.external_id_key(str(v)) for v in values if v is not None]
        repeated = {key for key in keys if keys.count(key) > 1}
        positions = iter(range(len(records)))

        def upsert(record: Mapping[str, Any]) -> dict[str, Any]:
            value = values[next(positions)]
            _task_record(record)
            if value is None or value == "":
                raise record_error("MISSING_ARGUMENT", f"{field.name} not specified", [])
            if self.org.external_id_key(str(value)) in repeated:
                raise record_error(
                    "DUPLICATE_EXTERNAL_ID",
                    f"Duplicate external id specified: {value}",
                    [field.name],
                )
            row, created = self.org.upsert_task(
                field.name, str(value), record, text, actor, version=version
            )
            return {"id": row["Id"], "success": True, "errors": [], "created": created}

        return _run_collection(self.org, records, upsert, all_or_none)

    def _collection_delete(self, request: Request, actor: Actor) -> Response:
        raw_ids = [part for part in (request.param("ids") or "").split(",") if part]
        if not raw_ids:
            raise ApiError(
                400, "MISSING_ARGUMENT", "ids: a comma-separated list of ids is required"
            )
        if len(raw_ids) > MAX_COLLECTION_RECORDS:
            raise _too_many()
        all_or_none = (request.param("allOrNone") or "").lower() == "true"
        targets = iter(raw_ids)

        def delete(_: Mapping[str, Any]) -> dict[str, Any]:
            record_id = next(targets)
            normalised = ids.normalise_id(record_id)
            if normalised is None:
                raise record_error("MALFORMED_ID", f"malformed id {record_id}", [])
            if ids.key_prefix(normalised) != TASK.key_prefix:
                raise record_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            try:
                self.org.delete_task(normalised, actor)
            except ApiError as error:
                if error.error_code == "NOT_FOUND":
                    raise record_error(
                        "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []
                    ) from None
                raise
            return {"id": normalised, "success": True, "errors": []}

        return _run_collection(self.org, [{} for _ in raw_ids], delete, all_or_none)

    def _collection_get(self, request: Request, version: str, spec: SObjectSpec) -> Response:
        raw_ids = [part for part in (request.param("ids") or "").split(",") if part]
        wanted = [part for part in (request.param("fields") or "").split(",") if part]
        if not raw_ids or not wanted:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields are both required")
        if len(raw_ids) > MAX_COLLECTION_RECORDS:
            raise _too_many()
        names = []
        for name in wanted:
            found = spec.get_field(name)
            if found is None:
                raise ApiError(
                    400, "INVALID_FIELD", f"No such column '{name}' on entity '{spec.name}'."
                )
            names.append(found.name)
        results: list[dict[str, Any] | None] = []
        for raw in raw_ids:
            normalised = ids.normalise_id(raw)
            row = (
                self.org.store.row(
                    f'SELECT * FROM "{spec.name}" WHERE Id = ?'
                    + (" AND IsDeleted = 0" if spec.has_recycle_bin else ""),
                    (normalised,),
                )
                if normalised
                else None
            )
            results.append(
                None
                if row is None
                else spec.row_to_json(row, version, tuple(dict.fromkeys([*names, "Id"])))
            )
        return json_reply(200, results)


def _task_record(record: Mapping[str, Any]) -> None:
    kind = (
        str(record["attributes"]["type"]) if isinstance(record.get("attributes"), Mapping) else ""
    )
    if kind and kind.lower() != "task":
        raise record_error(
            "INVALID_TYPE",
            f"The emulator saves Task records only; sObject type '{kind}' is not supported.",
            [],
        )


def _run_collection(
    org: Org,
    records: list[Mapping[str, Any]],
    operation: Callable[[Mapping[str, Any]], dict[str, Any]],
    all_or_none: bool,
) -> Response:
    """Apply `operation` to each record in its own savepoint; allOrNone undoes them all."""
    results: list[dict[str, Any]] = []
    failed = False
    for record in records:
        try:
            with org.store.transaction():
                results.append(operation(record))
        except ApiError as error:
            failed = True
            results.append({"success": False, "errors": [error.collection_error()]})
    if failed and all_or_none:
        rolled_back = [
            {"success": False, "errors": [dict(_ROLLED_BACK)]} if result["success"] else result
            for result in results
        ]
        raise RolledBackError(json_reply(200, rolled_back))
    return json_reply(200, results)


def _too_many() -> ApiError:
    return ApiError(
        400,
        "EXCEEDED_ID_LIMIT",
        "record limit reached. cannot submit more than 200 records into this call",
    )


def _query_page(
    version: str,
    endpoint: str,
    records: list[dict[str, Any]],
    total: int,
    following: str | None,
) -> dict[str, Any]:
    page: dict[str, Any] = {"totalSize": total, "done": following is None}
    if following is not None:
        page["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{following}"
    page["records"] = records
    return page


def _batch_size(request: Request) -> int:
    options = request.header("Sforce-Query-Options") or ""
    for option in options.split(","):
        key, _, value = option.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, int(value.strip())))
    return DEFAULT_BATCH_SIZE


def _replication_date(request: Request, name: str) -> int:
    raw = request.param(name)
    if raw is None:
        raise ApiError(
            400, "INVALID_REPLICATION_DATE", f"{name}: required, an ISO 8601 dateTime in UTC"
        )
    # A literal '+' in a query string arrives as a space; read it back as the offset sign.
    text = _OFFSET_SPACE.sub(r"+\1", raw.strip())
    try:
        return floor_minute(parse_instant(text))
    except ValueError:
        raise ApiError(
            400,
            "INVALID_REPLICATION_DATE",
            f"{name}: {raw!r} is not an ISO 8601 dateTime such as 2026-11-22T10:00:00+00:00",
        ) from None


def _unmodified_since(request: Request) -> int | None:
    header = request.header("If-Unmodified-Since")
    if header is None:
        return None
    try:
        return parse_http_date(header)
    except ValueError:
        raise ApiError(
            400,
            "INVALID_HEADER_VALUE",
            f"If-Unmodified-Since: {header!r} is not a date in the format "
            "EEE, dd MMM yyyy HH:mm:ss z",
        ) from None
