"""What the package's Apex says about the notification contract, read from its parse tree.

Each function answers one question the contract tests compare with `schemas.notification`; the
drift tests run the same functions on deliberately broken copies of the Apex to prove they would
notice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.notification import (
    SIGNATURE_TEST_VECTOR,
    NotificationBatch,
    TaskNotification,
    TriggerOp,
    dump_notification_batch,
)
from tests.plugin.apex import (
    REPO,
    ApexClass,
    ApexEvaluator,
    ApexMethod,
    MethodCall,
    Node,
    UnsupportedApexError,
    method_calls,
    string_literals,
)

NOTIFICATION_JSON_SCHEMA = REPO / "schemas" / "json" / "task-notification.v1.json"

BATCH_CLASS = "TaskNotificationBatch"
NOTIFICATION_CLASS = "Notification"
SIGNER_CLASS = "TaskNotificationSigner"
SIGNER_TEST_CLASS = "TaskNotificationSignerTest"
DELIVERY_CLASS = "TaskNotificationDelivery"
HANDLER_CLASS = "TaskChangeHandler"

JsonKeys = tuple[frozenset[str], frozenset[str]]


def schema_json_keys() -> JsonKeys:
    """(batch keys, notification keys) of the exported JSON Schema."""
    schema = json.loads(NOTIFICATION_JSON_SCHEMA.read_text())
    items = schema["properties"]["notifications"]["items"]
    return frozenset(schema["properties"]), frozenset(items["properties"])


def schema_required_keys() -> JsonKeys:
    schema = json.loads(NOTIFICATION_JSON_SCHEMA.read_text())
    items = schema["properties"]["notifications"]["items"]
    return frozenset(schema["required"]), frozenset(items["required"])


def stand_in_json_keys() -> JsonKeys:
    """The keys `dump_notification_batch` writes, the function the emulator's stand-in uses."""
    stamp = datetime(2026, 11, 22, 10, 15, 30, tzinfo=UTC)
    notification = TaskNotification(
        task_id="00T000000000001AAA",
        op=TriggerOp.UPDATE,
        owner_id="005000000000002AAA",
        actor_id="005000000000003AAA",
        system_modstamp=stamp,
        changed_fields=("Status",),
    )
    dumped: dict[str, Any] = dump_notification_batch(
        NotificationBatch(org_id="00D000000000001AAA", sent_at=stamp, notifications=(notification,))
    )
    return frozenset(dumped), frozenset(dumped["notifications"][0])


def apex_json_keys(classes: Mapping[str, ApexClass]) -> JsonKeys:
    """The JSON keys the Apex writes: `JSON.serialize` writes a class's instance fields."""
    batch = classes[BATCH_CLASS]
    return frozenset(batch.instance_fields()), frozenset(
        batch.inner[NOTIFICATION_CLASS].instance_fields()
    )


def pinned_vector() -> tuple[str, int, str, str]:
    """SIGNATURE_TEST_VECTOR as (secret, timestamp, body, signature)."""
    vector = SIGNATURE_TEST_VECTOR
    secret, timestamp = vector["secret"], vector["timestamp"]
    body, signature = vector["body"], vector["signature"]
    assert isinstance(secret, str) and isinstance(timestamp, int)
    assert isinstance(body, str) and isinstance(signature, str)
    return secret, timestamp, body, signature


def apex_vector_signature(classes: Mapping[str, ApexClass]) -> str:
    secret, timestamp, body, _ = pinned_vector()
    return apex_signature(classes, secret, timestamp, body)


def apex_signature(classes: Mapping[str, ApexClass], secret: str, timestamp: int, body: str) -> str:
    signature = ApexEvaluator(classes).call(SIGNER_CLASS, "sign", secret, timestamp, body)
    if not isinstance(signature, str):
        raise UnsupportedApexError(f"{SIGNER_CLASS}.sign returned {signature!r}")
    return signature


def apex_constant(classes: Mapping[str, ApexClass], class_name: str, name: str) -> Any:
    return ApexEvaluator(classes).constant(class_name, name)


def apex_signer_test_vector(classes: Mapping[str, ApexClass]) -> dict[str, Any]:
    """The vector the Apex test class asserts, in the shape of SIGNATURE_TEST_VECTOR."""
    names = {"secret": "SECRET", "timestamp": "TIMESTAMP", "body": "BODY", "signature": "SIGNATURE"}
    return {
        key: apex_constant(classes, SIGNER_TEST_CLASS, f"VECTOR_{name}")
        for key, name in names.items()
    }


def apex_mapped_fields(classes: Mapping[str, ApexClass]) -> tuple[str, ...]:
    initializer = classes[HANDLER_CLASS].fields["MAPPED_FIELDS"].initializer
    if initializer is None:
        raise UnsupportedApexError(f"{HANDLER_CLASS}.MAPPED_FIELDS has no initializer")
    return tuple(string_literals(initializer))


def apex_string_set(classes: Mapping[str, ApexClass], class_name: str, name: str) -> frozenset[str]:
    initializer = classes[class_name].fields[name].initializer
    if initializer is None:
        raise UnsupportedApexError(f"{class_name}.{name} has no initializer")
    return frozenset(string_literals(initializer))


def local_initializers(method: ApexMethod) -> dict[str, tuple[str, Node | None]]:
    """Each local variable of a method: (declared type, initializer)."""
    found: dict[str, tuple[str, Node | None]] = {}
    for declaration in method.body.find("LocalVariableDeclaration"):
        type_name = declaration.child("TypeRef").text
        for declarator in declaration.child("VariableDeclarators").rule_children(
            "VariableDeclarator"
        ):
            expressions = [child for child in declarator.children[2:] if child.rule]
            found[declarator.child("Id").text] = (
                type_name,
                expressions[0] if expressions else None,
            )
    return found


def calls_named(method: ApexMethod, name: str) -> list[MethodCall]:
    return [call for call in method_calls(method.body) if call.name == name]
