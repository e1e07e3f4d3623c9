"""The contract checks notice drift: each case edits a copy of one Apex class the way a careless
change would, parses it with the real parser, and expects the check to disagree with schemas/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.notification import MAPPED_TASK_FIELDS, SIGNATURE_TEST_VECTOR
from tests.plugin.apex import SOURCE, ApexClass, UnsupportedApexError, parse_apex
from tests.plugin.package_contract import (
    apex_json_keys,
    apex_mapped_fields,
    apex_signer_test_vector,
    apex_vector_signature,
    schema_json_keys,
)

Check = Callable[[dict[str, ApexClass]], Any]

SIGNATURE: tuple[Check, Any] = (apex_vector_signature, SIGNATURE_TEST_VECTOR["signature"])
KEYS: tuple[Check, Any] = (apex_json_keys, schema_json_keys())

DRIFTS: dict[str, tuple[str, str, str, tuple[Check, Any]]] = {
    "a renamed notification key": (
        "TaskNotificationBatch",
        "public String op;",
        "public String operation;",
        KEYS,
    ),
    "a camel-cased batch key": (
        "TaskNotificationBatch",
        "public String sent_at;",
        "public String sentAt;",
        KEYS,
    ),
    "an extra key": (
        "TaskNotificationBatch",
        "public String org_id;",
        "public String org_id;\n    public String org_name;",
        KEYS,
    ),
    "another separator in the signed string": (
        "TaskNotificationSigner",
        "+ '.' +",
        "+ ':' +",
        SIGNATURE,
    ),
    "body before timestamp": (
        "TaskNotificationSigner",
        "String.valueOf(timestamp) + '.' + body",
        "body + '.' + String.valueOf(timestamp)",
        SIGNATURE,
    ),
    "another MAC": ("TaskNotificationSigner", "'hmacSHA256'", "'hmacSHA512'", SIGNATURE),
    "base64 instead of hex": (
        "TaskNotificationSigner",
        "EncodingUtil.convertToHex(mac)",
        "EncodingUtil.base64Encode(mac)",
        SIGNATURE,
    ),
    "another scheme prefix": (
        "TaskNotificationSigner",
        "SCHEME = 'v1'",
        "SCHEME = 'v2'",
        SIGNATURE,
    ),
    "key and data swapped": (
        "TaskNotificationSigner",
        "Blob.valueOf(String.valueOf(timestamp) + '.' + body),\n            Blob.valueOf(secret)",
        "Blob.valueOf(secret),\n            Blob.valueOf(String.valueOf(timestamp) + '.' + body)",
        SIGNATURE,
    ),
    "a changed vector in the Apex test": (
        "TaskNotificationSignerTest",
        "v1=db9fc",
        "v1=db9fd",
        (apex_signer_test_vector, SIGNATURE_TEST_VECTOR),
    ),
    "a mapped field dropped": (
        "TaskChangeHandler",
        ",\n        'Description'",
        "",
        (apex_mapped_fields, MAPPED_TASK_FIELDS),
    ),
}


def parse_edited(tmp_path: Path, class_name: str, old: str, new: str) -> dict[str, ApexClass]:
    source = (SOURCE / "classes" / f"{class_name}.cls").read_text()
    assert source.count(old) == 1, f"{class_name}.cls no longer contains {old!r} exactly once"
    edited = tmp_path / f"{class_name}.cls"
    edited.write_text(source.replace(old, new))
    report = parse_apex([edited])
    assert report.files[0].errors == (), "the edited class still parses"
    return {class_name: ApexClass.of_file(report.files[0])}


@pytest.mark.parametrize("drift", DRIFTS, ids=list(DRIFTS))
def test_the_contract_checks_notice(tmp_path: Path, drift: str) -> None:
    class_name, old, new, (check, expected) = DRIFTS[drift]
    classes = parse_edited(tmp_path, class_name, old, new)
    assert check(classes) != expected


def test_a_signing_rewrite_the_evaluator_cannot_follow_fails_loudly(tmp_path: Path) -> None:
    classes = parse_edited(
        tmp_path, "TaskNotificationSigner", "Blob.valueOf(secret)", "Blob.valueOf(secret.trim())"
    )
    with pytest.raises(UnsupportedApexError, match=r"call secret\.trim"):
        apex_vector_signature(classes)


def test_an_unedited_copy_passes_the_same_checks(tmp_path: Path) -> None:
    classes = parse_edited(tmp_path, "TaskNotificationSigner", "Blob mac =", "Blob mac =")
    assert apex_vector_signature(classes) == SIGNATURE_TEST_VECTOR["signature"]
