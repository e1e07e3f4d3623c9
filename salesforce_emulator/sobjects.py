"""The sObjects the emulated org has (Task, User, TaskStatus): their fields and describe metadata.

Every field carries what Salesforce's describe says about it (type, length, whether it can be
set on create or update, picklist values) and the SQLite storage that follows from its type:
text for ids, strings, picklists and dates, 0/1 for booleans, epoch milliseconds for dateTimes.
Field names are matched case-insensitively, as the REST API matches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from salesforce_emulator import ids
from salesforce_emulator.stamps import format_instant

FieldType = Literal[
    "id",
    "reference",
    "string",
    "combobox",
    "textarea",
    "picklist",
    "email",
    "boolean",
    "date",
    "datetime",
    "int",
]
SoqlKind = Literal["id", "string", "boolean", "date", "datetime", "int"]

_SOQL_KIND: Final[Mapping[FieldType, SoqlKind]] = {
    "id": "id",
    "reference": "id",
    "string": "string",
    "combobox": "string",
    "textarea": "string",
    "picklist": "string",
    "email": "string",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "int": "int",
}
_SOAP_TYPE: Final[Mapping[FieldType, str]] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "int": "xsd:int",
}


@dataclass(frozen=True)
class PicklistValue:
    value: str
    default: bool = False


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    type: FieldType
    length: int = 0
    nillable: bool = True
    createable: bool = False
    updateable: bool = False
    defaulted_on_create: bool = False
    picklist: tuple[PicklistValue, ...] = ()
    restricted_picklist: bool = False
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None

    @property
    def soql_kind(self) -> SoqlKind:
        return _SOQL_KIND[self.type]

    @property
    def picklist_values(self) -> tuple[str, ...]:
        return tuple(value.value for value in self.picklist)

    def to_json(self, stored: Any) -> Any:
        """The stored SQLite value as Salesforce writes it in JSON."""
        if stored is None:
            return None
        if self.type == "boolean":
            return bool(stored)
        if self.type == "datetime":
            return format_instant(int(stored))
        return stored

    def describe(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        text_like = self.soql_kind == "string"
        described = {
            "aggregatable": self.type not in ("textarea",),
            "autoNumber": False,
            "byteLength": self.length * 3,
            "calculated": False,
            "caseSensitive": False,
            "createable": self.createable,
            "custom": self.name.endswith("__c"),
            "defaultValue": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "externalId": self.external_id,
            "filterable": self.type != "textarea",
            "groupable": self.type not in ("textarea", "datetime"),
            "idLookup": self.type == "id" or self.external_id,
            "label": self.label,
            "length": self.length if text_like else 0,
            "name": self.name,
            "nameField": False,
            "nillable": self.nillable,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value.default,
                    "label": value.value,
                    "validFor": None,
                    "value": value.value,
                }
                for value in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted_picklist,
            "soapType": _SOAP_TYPE.get(self.type, "xsd:string"),
            "sortable": self.type != "textarea",
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }
        described.update(overrides or {})
        return described


@dataclass(frozen=True)
class SObjectSpec:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    createable: bool = False
    updateable: bool = False
    deletable: bool = False
    has_recycle_bin: bool = False
    _by_lower: dict[str, FieldSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower.update({spec.name.lower(): spec for spec in self.fields})

    def get_field(self, name: str) -> FieldSpec | None:
        return self._by_lower.get(name.lower())

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    def row_to_json(
        self, row: Mapping[str, Any], version: str, names: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """A record as the REST API returns it: `attributes` first, then the fields asked for."""
        record: dict[str, Any] = {"attributes": self.attributes(row["Id"], version)}
        for name in names or self.field_names:
            record[name] = self._by_lower[name.lower()].to_json(row[name])
        return record

    def attributes(self, record_id: str, version: str) -> dict[str, str]:
        return {
            "type": self.name,
            "url": f"/services/data/v{version}/sobjects/{self.name}/{record_id}",
        }

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "describe": f"{base}/describe",
            "sobject": base,
        }

    def global_describe(self, version: str) -> dict[str, Any]:
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": False,
            "customSetting": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": False,
            "mruEnabled": False,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.has_recycle_bin,
            "updateable": self.updateable,
            "urls": self.urls(version),
        }

    def describe(
        self, version: str, *, overrides: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        overrides = overrides or {}
        described = self.global_describe(version)
        described.update(
            {
                "childRelationships": [],
                "fields": [spec.describe(overrides.get(spec.name)) for spec in self.fields],
                "recordTypeInfos": [],
                "supportedScopes": [{"label": "All tasks", "name": "everything"}],
            }
        )
        return described


def _system_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(
            "CreatedDate", "Created Date", "datetime", nillable=False, defaulted_on_create=True
        ),
        FieldSpec(
            "CreatedById",
            "Created By ID",
            "reference",
            18,
            nillable=False,
            defaulted_on_create=True,
            reference_to=("User",),
            relationship_name="CreatedBy",
        ),
        FieldSpec(
            "LastModifiedDate",
            "Last Modified Date",
            "datetime",
            nillable=False,
            defaulted_on_create=True,
        ),
        FieldSpec(
            "LastModifiedById",
            "Last Modified By ID",
            "reference",
            18,
            nillable=False,
            defaulted_on_create=True,
            reference_to=("User",),
            relationship_name="LastModifiedBy",
        ),
        FieldSpec(
            "SystemModstamp",
            "System Modstamp",
            "datetime",
            nillable=False,
            defaulted_on_create=True,
        ),
    )


TASK_STATUSES: Final = (
    ("Not Started", False, True),
    ("In Progress", False, False),
    ("Completed", True, False),
    ("Waiting on someone else", False, False),
    ("Deferred", False, False),
)
TASK_PRIORITIES: Final = ("High", "Normal", "Low")
DEFAULT_PRIORITY: Final = "Normal"
DEFAULT_STATUS: Final = "Not Started"
TASK_SUBTYPES: Final = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
DEFAULT_TASK_SUBTYPE: Final = "Task"
CLOSED_STATUSES: Final = frozenset(name for name, closed, _ in TASK_STATUSES if closed)
EXTERNAL_ID_FIELD: Final = "Sales_Connect_Id__c"
EXTERNAL_ID_MAX_LENGTH: Final = 64
SUBJECT_MAX_LENGTH: Final = 255
DESCRIPTION_MAX_LENGTH: Final = 32_000

TASK: Final = SObjectSpec(
    name="Task",
    label="Task",
    label_plural="Tasks",
    key_prefix=ids.TASK_PREFIX,
    createable=True,
    updateable=True,
    deletable=True,
    has_recycle_bin=True,
    fields=(
        FieldSpec("Id", "Activity ID", "id", 18, nillable=False, defaulted_on_create=True),
        FieldSpec(
            "WhoId",
            "Name ID",
            "reference",
            18,
            createable=True,
            updateable=True,
            reference_to=("Contact", "Lead"),
            relationship_name="Who",
        ),
        FieldSpec(
            "WhatId",
            "Related To ID",
            "reference",
            18,
            createable=True,
            updateable=True,
            reference_to=("Account", "Opportunity", "Case"),
            relationship_name="What",
        ),
        FieldSpec(
            "Subject", "Subject", "combobox", SUBJECT_MAX_LENGTH, createable=True, updateable=True
        ),
        FieldSpec("ActivityDate", "Due Date Only", "date", createable=True, updateable=True),
        FieldSpec(
            "Status",
            "Status",
            "picklist",
            40,
            nillable=False,
            createable=True,
            updateable=True,
            defaulted_on_create=True,
            picklist=tuple(
                PicklistValue(name, default=default) for name, _, default in TASK_STATUSES
            ),
            restricted_picklist=True,
        ),
        FieldSpec(
            "Priority",
            "Priority",
            "picklist",
            40,
            nillable=False,
            createable=True,
            updateable=True,
            defaulted_on_create=True,
            picklist=tuple(
                PicklistValue(name, default=name == DEFAULT_PRIORITY) for name in TASK_PRIORITIES
            ),
            restricted_picklist=True,
        ),
        FieldSpec(
            "OwnerId",
            "Assigned To ID",
            "reference",
            18,
            nillable=False,
            createable=True,
            updateable=True,
            defaulted_on_create=True,
            reference_to=("User",),
            relationship_name="Owner",
        ),
        FieldSpec(
            "Description",
            "Description",
            "textarea",
            DESCRIPTION_MAX_LENGTH,
            createable=True,
            updateable=True,
        ),
        FieldSpec(
            "TaskSubtype",
            "Task Subtype",
            "picklist",
            40,
            createable=True,
            defaulted_on_create=True,
            picklist=tuple(
                PicklistValue(name, default=name == DEFAULT_TASK_SUBTYPE) for name in TASK_SUBTYPES
            ),
            restricted_picklist=True,
        ),
        FieldSpec("IsClosed", "Closed", "boolean", nillable=False, defaulted_on_create=True),
        FieldSpec("IsDeleted", "Deleted", "boolean", nillable=False, defaulted_on_create=True),
        FieldSpec(
            "IsRecurrence",
            "Create Recurring Series of Tasks",
            "boolean",
            nillable=False,
            createable=True,
            defaulted_on_create=True,
        ),
        *_system_fields(),
        FieldSpec(
            EXTERNAL_ID_FIELD,
            "Sales Connect Id",
            "string",
            EXTERNAL_ID_MAX_LENGTH,
            createable=True,
            updateable=True,
            external_id=True,
            unique=True,
        ),
    ),
)

USER: Final = SObjectSpec(
    name="User",
    label="User",
    label_plural="Users",
    key_prefix=ids.USER_PREFIX,
    fields=(
        FieldSpec("Id", "User ID", "id", 18, nillable=False, defaulted_on_create=True),
        FieldSpec("Username", "Username", "string", 80, nillable=False),
        FieldSpec("LastName", "Last Name", "string", 80, nillable=False),
        FieldSpec("FirstName", "First Name", "string", 40),
        FieldSpec("Name", "Full Name", "string", 121, nillable=False),
        FieldSpec("Email", "Email", "email", 128, nillable=False),
        FieldSpec("IsActive", "Active", "boolean", nillable=False, defaulted_on_create=True),
        FieldSpec("TimeZoneSidKey", "Time Zone", "string", 40, nillable=False),
        *_system_fields(),
    ),
)

TASK_STATUS: Final = SObjectSpec(
    name="TaskStatus",
    label="Task Status Value",
    label_plural="Task Status Values",
    key_prefix=ids.TASK_STATUS_PREFIX,
    fields=(
        FieldSpec("Id", "Task Status Value ID", "id", 18, nillable=False),
        FieldSpec("MasterLabel", "Master Label", "string", 255),
        FieldSpec("ApiName", "Api Name", "string", 255, nillable=False),
        FieldSpec("SortOrder", "Sort Order", "int"),
        FieldSpec("IsDefault", "Is Default", "boolean", nillable=False),
        FieldSpec("IsClosed", "Is Closed", "boolean", nillable=False),
        *_system_fields(),
    ),
)

SOBJECTS: Final[Mapping[str, SObjectSpec]] = {
    spec.name.lower(): spec for spec in (TASK, USER, TASK_STATUS)
}


def sobject(name: str) -> SObjectSpec | None:
    return SOBJECTS.get(name.lower())
