"""The package's notifications match the contract in schemas/: the JSON keys, the signature the
ingress verifies, and the constants both sides share."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.fields import UTC_STAMP_PATTERN, parse_utc_stamp
from schemas.notification import (
    MAPPED_TASK_FIELDS,
    MAX_NOTIFICATIONS_PER_BATCH,
    NOTIFICATION_SCHEMA_VERSION,
    SIGNATURE_HEADER,
    SIGNATURE_TEST_VECTOR,
    TIMESTAMP_HEADER,
    TriggerOp,
    sign_notification,
    verify_notification,
)
from tests.plugin.apex import SOURCE, ApexClass, ApexEvaluator, assigned_this_fields, method_calls
from tests.plugin.package_contract import (
    BATCH_CLASS,
    DELIVERY_CLASS,
    HANDLER_CLASS,
    NOTIFICATION_CLASS,
    SIGNER_CLASS,
    apex_constant,
    apex_json_keys,
    apex_mapped_fields,
    apex_signature,
    apex_signer_test_vector,
    apex_string_set,
    apex_vector_signature,
    calls_named,
    local_initializers,
    pinned_vector,
    schema_json_keys,
    schema_required_keys,
    stand_in_json_keys,
)


def test_apex_schema_and_stand_in_write_the_same_keys_at_both_levels(
    apex_classes: dict[str, ApexClass],
) -> None:
    apex = apex_json_keys(apex_classes)
    schema = schema_json_keys()
    stand_in = stand_in_json_keys()
    assert apex[0] == schema[0] == stand_in[0], "batch keys"
    assert apex[1] == schema[1] == stand_in[1], "notification keys"
    assert schema_required_keys() == schema, "the schema requires every key the Apex writes"


def test_every_key_is_given_a_value_when_a_notification_is_built(
    apex_classes: dict[str, ApexClass],
) -> None:
    batch = apex_classes[BATCH_CLASS]
    notification = batch.inner[NOTIFICATION_CLASS]
    for apex_class in (batch, notification):
        constructors = apex_class.constructors()
        assert constructors, f"{apex_class.name} has a constructor"
        for constructor in constructors:
            assigned = assigned_this_fields(constructor)
            assert assigned >= apex_class.instance_fields(), (
                f"{apex_class.name} constructor leaves "
                f"{apex_class.instance_fields() - assigned} unset (they would be sent as null)"
            )


def test_the_body_is_the_serialized_batch_and_is_what_gets_signed(
    apex_classes: dict[str, ApexClass],
) -> None:
    assert apex_classes[BATCH_CLASS].method("toJson").body.text == "{returnJSON.serialize(this);}"
    post = apex_classes[DELIVERY_CLASS].method("post")
    locals_ = local_initializers(post)

    (set_body,) = calls_named(post, "setBody")
    body_variable = set_body.arguments[0].text
    body_type, body_value = locals_[body_variable]
    assert body_type == "String"
    assert body_value is not None
    assert body_value.text.startswith(f"new{BATCH_CLASS}(")
    assert body_value.text.endswith(".toJson()")
    org_argument = body_value.children[0].child("Creator").find("ExpressionList")
    org_id = next(org_argument).children[0].text
    assert org_id.startswith("String.valueOf(")
    org_type, _ = locals_[org_id.removeprefix("String.valueOf(").removesuffix(")")]
    assert org_type == "Id", "an Id converts to the 18-character form the contract requires"

    (sign_call,) = calls_named(post, "sign")
    assert sign_call.target == SIGNER_CLASS
    secret_variable, timestamp_variable, signed_body = (arg.text for arg in sign_call.arguments)
    assert signed_body == body_variable, "the signature covers exactly the body that is sent"
    timestamp_type, timestamp_value = locals_[timestamp_variable]
    assert timestamp_type == "Long"
    assert timestamp_value is not None
    assert timestamp_value.text == "now.getTime()/1000", "unix seconds, not milliseconds"
    assert post.parameters[0] == secret_variable

    evaluator = ApexEvaluator(apex_classes)
    headers = {
        evaluator.evaluate(call.arguments[0], {}, DELIVERY_CLASS): call.arguments[1].text
        for call in calls_named(post, "setHeader")
    }
    assert headers[TIMESTAMP_HEADER] == f"String.valueOf({timestamp_variable})"
    assert (
        headers[SIGNATURE_HEADER]
        == f"{SIGNER_CLASS}.sign({secret_variable},{timestamp_variable},{body_variable})"
    )
    assert headers["Content-Type"] == "'application/json'"
    (set_method,) = calls_named(post, "setMethod")
    assert set_method.arguments[0].text == "'POST'"


def test_the_apex_signature_of_the_test_vector_is_the_pinned_one(
    apex_classes: dict[str, ApexClass],
) -> None:
    assert apex_vector_signature(apex_classes) == pinned_vector()[3]


def test_the_apex_test_class_asserts_the_same_vector(apex_classes: dict[str, ApexClass]) -> None:
    assert apex_signer_test_vector(apex_classes) == SIGNATURE_TEST_VECTOR


@settings(max_examples=60, deadline=None)
@given(
    secret=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    timestamp=st.integers(min_value=1_000_000_000, max_value=9_999_999_999),
    body=st.text(st.characters(codec="utf-8"), max_size=200),
)
def test_what_the_apex_signs_the_ingress_accepts(
    apex_classes: dict[str, ApexClass], secret: str, timestamp: int, body: str
) -> None:
    signature = apex_signature(apex_classes, secret, timestamp, body)
    assert signature == sign_notification(secret, timestamp, body.encode())
    assert (
        verify_notification(secret, str(timestamp), signature, body.encode(), now=timestamp)
        == timestamp
    )


def test_shared_constants_agree(apex_classes: dict[str, ApexClass]) -> None:
    assert apex_mapped_fields(apex_classes) == MAPPED_TASK_FIELDS
    handler = apex_classes[HANDLER_CLASS]
    ops = {
        name: apex_constant(apex_classes, HANDLER_CLASS, name)
        for name, declared in handler.fields.items()
        if name.startswith("OP_") and declared.type == "String"
    }
    assert set(ops.values()) == {op.value for op in TriggerOp}
    by_trigger = handler.fields["OP_BY_TRIGGER"].initializer
    assert by_trigger is not None
    for name, value in ops.items():
        pair = f"System.TriggerOperation.AFTER_{value.upper()}=>{name}"
        assert pair in by_trigger.text, f"after {value} is reported as {value}"
    assert apex_constant(apex_classes, HANDLER_CLASS, "REMINDER_SUBTYPE") == "Task"
    assert apex_constant(apex_classes, BATCH_CLASS, "SCHEMA_VERSION") == (
        NOTIFICATION_SCHEMA_VERSION
    )
    assert apex_constant(apex_classes, BATCH_CLASS, "MAX_NOTIFICATIONS") == (
        MAX_NOTIFICATIONS_PER_BATCH
    )


def java_format(pattern: str, value: datetime) -> str:
    """Formats like Java's SimpleDateFormat (Apex `Datetime.formatGmt`) for the letters used."""
    fields = {
        "yyyy": f"{value.year:04d}",
        "MM": f"{value.month:02d}",
        "dd": f"{value.day:02d}",
        "HH": f"{value.hour:02d}",
        "mm": f"{value.minute:02d}",
        "ss": f"{value.second:02d}",
        "SSS": f"{value.microsecond // 1000:03d}",
    }
    out = []
    position = 0
    while position < len(pattern):
        if pattern[position] == "'":
            end = pattern.index("'", position + 1)
            out.append(pattern[position + 1 : end])
            position = end + 1
        elif pattern[position].isalpha():
            end = position
            while end < len(pattern) and pattern[end] == pattern[position]:
                end += 1
            run = pattern[position:end]
            if run not in fields:
                raise AssertionError(f"pattern letters {run!r} are not modelled")
            out.append(fields[run])
            position = end
        else:
            out.append(pattern[position])
            position += 1
    return "".join(out)


def test_stamps_are_written_in_the_contracts_utc_format(
    apex_classes: dict[str, ApexClass],
) -> None:
    pattern = apex_constant(apex_classes, BATCH_CLASS, "UTC_STAMP_FORMAT")
    instant = datetime(2026, 11, 22, 10, 15, 30, 512000, tzinfo=UTC)
    written = java_format(pattern, instant)
    assert written == "2026-11-22T10:15:30.512Z"
    assert UTC_STAMP_PATTERN.match(written)
    assert parse_utc_stamp(written) == instant
    stamp_calls = {
        call.name for call in method_calls(apex_classes[BATCH_CLASS].method("stamp").body)
    }
    assert "formatGmt" in stamp_calls, "formatGmt writes UTC; format would use the user's zone"
    assert "format" not in stamp_calls


def test_the_apex_tests_expect_the_schemas_keys(apex_classes: dict[str, ApexClass]) -> None:
    batch_keys, notification_keys = schema_json_keys()
    assert apex_string_set(apex_classes, "TaskNotificationBatchTest", "BATCH_KEYS") == batch_keys
    assert (
        apex_string_set(apex_classes, "TaskNotificationBatchTest", "NOTIFICATION_KEYS")
        == notification_keys
    )


def test_callouts_go_to_the_packages_named_credential(apex_classes: dict[str, ApexClass]) -> None:
    endpoint = apex_constant(apex_classes, DELIVERY_CLASS, "ENDPOINT")
    assert endpoint.startswith("callout:")
    name = endpoint.removeprefix("callout:")
    assert (SOURCE / "namedCredentials" / f"{name}.namedCredential-meta.xml").is_file()
