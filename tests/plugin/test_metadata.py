"""The package's metadata: well-formed, complete for its type, consistent with sfdx-project.json
and with what the Apex names. Checked offline; a deploy to an org checks the rest."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.apex import PLUGIN, SOURCE, ApexClass, ParseReport
from tests.plugin.metadata_rules import (
    API_VERSION,
    Package,
    inventory,
    problems,
    q,
    read_xml,
    text_of,
    texts_of,
)
from tests.plugin.package_contract import apex_constant

SUBSCRIBER_CONFIG = PLUGIN / "subscriber-config"
CUSTOM_NAME = re.compile(r"^\w+__(c|e|mdt)$")


@pytest.fixture(scope="module")
def package(sfdx_project: dict[str, Any]) -> Package:
    return inventory(SOURCE, sfdx_project["sourceApiVersion"])


def plugin_xml_files() -> list[Path]:
    """Every XML file of the plugin, including the mdapi-format subscriber config."""
    return sorted(
        path
        for path in PLUGIN.rglob("*")
        if path.is_file()
        and "node_modules" not in path.parts
        and path.suffix in {".xml", ".platformEventSubscriberConfig"}
    )


def test_every_xml_file_is_well_formed() -> None:
    files = plugin_xml_files()
    assert len(files) >= 30
    for path in files:
        read_xml(path)


def test_every_metadata_file_has_what_its_type_requires(package: Package) -> None:
    assert len(package.files) >= 30
    assert problems(package) == []


def test_sfdx_project_and_the_metadata_agree(sfdx_project: dict[str, Any]) -> None:
    directories = sfdx_project["packageDirectories"]
    assert [entry.get("default", False) for entry in directories].count(True) == 1
    for entry in directories:
        assert (PLUGIN / entry["path"]).is_dir(), f"package directory {entry['path']} is missing"
    assert API_VERSION.match(sfdx_project["sourceApiVersion"])
    packaged = [PLUGIN / entry["path"] for entry in directories]
    stray = [
        path.relative_to(PLUGIN).as_posix()
        for path in PLUGIN.rglob("*-meta.xml")
        if "node_modules" not in path.parts
        and not any(path.is_relative_to(directory) for directory in packaged)
    ]
    assert stray == [], "source-format metadata outside every package directory is never deployed"
    assert not any(SUBSCRIBER_CONFIG.is_relative_to(directory) for directory in packaged), (
        "the subscriber config names an org's user, so `sf project deploy start` must not send it"
    )


def test_the_subscriber_config_deploys_on_its_own(
    sfdx_project: dict[str, Any], parsed_package: ParseReport
) -> None:
    manifest = read_xml(SUBSCRIBER_CONFIG / "package.xml")
    assert manifest.tag == q("Package")
    assert text_of(manifest, "version") == sfdx_project["sourceApiVersion"]
    members = texts_of(manifest, "types/members")
    assert texts_of(manifest, "types/name") == ["PlatformEventSubscriberConfig"]
    folder = SUBSCRIBER_CONFIG / "PlatformEventSubscriberConfigs"
    assert sorted(path.stem for path in folder.iterdir()) == sorted(members)
    for member in members:
        config = read_xml(folder / f"{member}.platformEventSubscriberConfig")
        assert config.tag == q("PlatformEventSubscriberConfig")
        for tag in ("masterLabel", "platformEventConsumer", "user", "batchSize"):
            assert text_of(config, tag), f"{member}: <{tag}> is required"
        assert 1 <= int(text_of(config, "batchSize") or 0) <= 2000
        trigger = parsed_package.by_name()[text_of(config, "platformEventConsumer") or ""]
        assert trigger.unit == "trigger"
        assert trigger.tree is not None
        assert trigger.tree.children[3].text.endswith("__e"), "it configures an event trigger"


def custom_names_in(parsed_package: ParseReport) -> set[str]:
    names = set()
    for file in parsed_package.files:
        assert file.tree is not None
        names |= {token for token in file.tree.tokens() if CUSTOM_NAME.match(token)}
    return names


def test_every_custom_object_and_field_the_apex_names_exists(
    package: Package, parsed_package: ParseReport
) -> None:
    objects = package.objects()
    fields = {name for sobject in objects for name in package.fields_of(sobject)}
    named = custom_names_in(parsed_package)
    assert {"Task_Change__e", "Tasksync_Setting__mdt", "Tasksync_Secret__c"} <= named
    missing = {name for name in named if name not in objects and name not in fields}
    assert missing == set()


def test_the_settings_record_the_apex_reads_is_deployed_switched_off(
    apex_classes: dict[str, ApexClass],
) -> None:
    record = apex_constant(apex_classes, "TasksyncSettings", "RECORD_NAME")
    path = SOURCE / "customMetadata" / f"Tasksync_Setting.{record}.md-meta.xml"
    values = {
        text_of(value, "field"): value.find(q("value"))
        for value in read_xml(path).iterfind(q("values"))
    }
    enabled = values["Enabled__c"]
    assert enabled is not None
    assert enabled.text == "false", "nothing is sent before the admin has set everything up"


def field_of(sobject: str, name: str) -> ET.Element:
    return read_xml(SOURCE / "objects" / sobject / "fields" / f"{name}.field-meta.xml")


def test_the_sales_connect_id_is_a_unique_external_id_on_activity() -> None:
    external_id = field_of("Activity", "Sales_Connect_Id__c")
    assert text_of(external_id, "type") == "Text"
    assert text_of(external_id, "externalId") == "true"
    assert text_of(external_id, "unique") == "true"
    assert text_of(external_id, "caseSensitive") == "true", "Sales Connect ids are case-sensitive"
    assert text_of(external_id, "length") == "64", "Sales Connect ids are 1-64 characters"


def test_events_are_published_after_commit_and_the_secret_is_protected() -> None:
    event = read_xml(SOURCE / "objects" / "Task_Change__e" / "Task_Change__e.object-meta.xml")
    assert text_of(event, "publishBehavior") == "PublishAfterCommit"
    secret = read_xml(
        SOURCE / "objects" / "Tasksync_Secret__c" / "Tasksync_Secret__c.object-meta.xml"
    )
    assert text_of(secret, "customSettingsType") == "Hierarchy"
    assert text_of(secret, "visibility") == "Protected"


def test_the_integration_permission_set_can_call_the_ingress() -> None:
    permissions = read_xml(
        SOURCE / "permissionsets" / "Tasksync_Integration.permissionset-meta.xml"
    )
    credential = read_xml(SOURCE / "namedCredentials" / "Tasksync_Ingress.namedCredential-meta.xml")
    external = [
        text_of(parameter, "externalCredential")
        for parameter in credential.iterfind(q("namedCredentialParameters"))
        if text_of(parameter, "parameterType") == "Authentication"
    ]
    granted = texts_of(
        permissions, "externalCredentialPrincipalAccesses/externalCredentialPrincipal"
    )
    assert [grant.split("-")[0] for grant in granted] == external


META = '<?xml version="1.0" encoding="UTF-8"?>\n'
BROKEN: dict[str, tuple[str, str, str]] = {
    "malformed": ("classes/A.cls-meta.xml", "<ApexClass", "not well-formed XML"),
    "wrong root": (
        "classes/A.cls-meta.xml",
        '<ApexTrigger xmlns="{ns}"><apiVersion>62.0</apiVersion><status>Active</status>'
        "</ApexTrigger>",
        "root element must be <ApexClass",
    ),
    "other api version": (
        "classes/A.cls-meta.xml",
        '<ApexClass xmlns="{ns}"><apiVersion>58.0</apiVersion><status>Active</status></ApexClass>',
        "differs from sfdx-project.json's sourceApiVersion 62.0",
    ),
    "field without type": (
        "objects/Activity/fields/X__c.field-meta.xml",
        '<CustomField xmlns="{ns}"><fullName>X__c</fullName><label>X</label></CustomField>',
        "<type> is required",
    ),
    "text without length": (
        "objects/Activity/fields/X__c.field-meta.xml",
        '<CustomField xmlns="{ns}"><fullName>X__c</fullName><label>X</label><type>Text</type>'
        "</CustomField>",
        "<length> is required for a Text field",
    ),
    "event without publish behaviour": (
        "objects/E__e/E__e.object-meta.xml",
        '<CustomObject xmlns="{ns}"><label>E</label><pluralLabel>E</pluralLabel>'
        "<deploymentStatus>Deployed</deploymentStatus><eventType>HighVolume</eventType>"
        "</CustomObject>",
        "<publishBehavior> is required",
    ),
    "named credential without its external credential": (
        "namedCredentials/N.namedCredential-meta.xml",
        '<NamedCredential xmlns="{ns}"><label>N</label>'
        "<namedCredentialType>SecuredEndpoint</namedCredentialType><namedCredentialParameters>"
        "<parameterName>Url</parameterName><parameterType>Url</parameterType>"
        "<parameterValue>https://x.invalid</parameterValue></namedCredentialParameters>"
        "<namedCredentialParameters><externalCredential>Gone</externalCredential>"
        "<parameterName>ExternalCredential</parameterName>"
        "<parameterType>Authentication</parameterType></namedCredentialParameters>"
        "</NamedCredential>",
        "names external credential Gone, which the package does not define",
    ),
    "permission on a missing field": (
        "permissionsets/P.permissionset-meta.xml",
        '<PermissionSet xmlns="{ns}"><label>P</label><fieldPermissions><editable>true</editable>'
        "<field>Activity.Gone__c</field><readable>true</readable></fieldPermissions>"
        "</PermissionSet>",
        "names Activity.Gone__c, which the package does not define",
    ),
    "record of a missing field": (
        "customMetadata/Tasksync_Setting.Other.md-meta.xml",
        '<CustomMetadata xmlns="{ns}"><label>O</label><values><field>Gone__c</field>'
        "<value>1</value></values></CustomMetadata>",
        "sets Gone__c, which is not a field of Tasksync_Setting__mdt",
    ),
    "stray file": ("layouts/L.layout-meta.xml", "<Layout/>", "knows where to put"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_broken_file_is_named_with_the_rule_it_breaks(tmp_path: Path, case: str) -> None:
    relative, content, expected = BROKEN[case]
    for path in SOURCE.rglob("*"):
        if path.is_file():
            copy = tmp_path / path.relative_to(SOURCE)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(path.read_bytes())
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(META + content.replace("{ns}", "http://soap.sforce.com/2006/04/metadata"))
    found = problems(inventory(tmp_path, "62.0"))
    assert any(relative in problem and expected in problem for problem in found), found
