"""What each kind of metadata file in the package must contain, checked without an org.

`inventory` reads the source tree (force-app/main/default) into a `Package`; `problems` returns one
readable line per broken rule, naming the file, the element and the rule, so a test can assert the
list is empty and a reader sees at once what to fix. The rules follow the Metadata API reference
for the element each type requires, plus the references between files (a permission set naming a
field, a Named Credential naming an External Credential) that a deploy would reject.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # parses this repository's own files only
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NS = "http://soap.sforce.com/2006/04/metadata"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
API_VERSION = re.compile(r"^\d{2,3}\.0$")
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")

FIELD_TYPES = {"Text", "Checkbox", "DateTime", "Date", "Number", "LongTextArea", "Picklist"}
TEXT_MAX = {"Text": 255}
EVENT_TYPES = {"HighVolume", "StandardVolume"}
PUBLISH_BEHAVIOURS = {"PublishAfterCommit", "PublishImmediately"}
AUTH_PROTOCOLS = {"AwsSv4", "Custom", "Jwt", "JwtExchange", "NoAuthentication", "Oauth", "Basic"}
PRINCIPAL_TYPES = {"NamedPrincipal", "PerUserPrincipal", "AwsStsPrincipal"}
STANDARD_OBJECTS = {"Activity", "Task", "Event"}

# Source-format file name -> the metadata type its root element must be.
LAYOUT: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^classes/\w+\.cls-meta\.xml$"), "ApexClass"),
    (re.compile(r"^triggers/\w+\.trigger-meta\.xml$"), "ApexTrigger"),
    (re.compile(r"^objects/(\w+)/\1\.object-meta\.xml$"), "CustomObject"),
    (re.compile(r"^objects/\w+/fields/\w+\.field-meta\.xml$"), "CustomField"),
    (re.compile(r"^customMetadata/\w+\.\w+\.md-meta\.xml$"), "CustomMetadata"),
    (re.compile(r"^namedCredentials/\w+\.namedCredential-meta\.xml$"), "NamedCredential"),
    (re.compile(r"^externalCredentials/\w+\.externalCredential-meta\.xml$"), "ExternalCredential"),
    (re.compile(r"^permissionsets/\w+\.permissionset-meta\.xml$"), "PermissionSet"),
]
SOURCE_SUFFIXES = {"classes": ".cls", "triggers": ".trigger"}


def q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def read_xml(path: Path) -> ET.Element:
    """The root element; raises ET.ParseError for a file that is not well-formed."""
    return ET.parse(path).getroot()  # noqa: S314 - our own files, not untrusted input


def text_of(element: ET.Element, tag: str) -> str | None:
    found = element.find(q(tag))
    return None if found is None or found.text is None else found.text.strip()


def texts_of(element: ET.Element, path: str) -> list[str]:
    return [
        (found.text or "").strip()
        for found in element.iterfind("/".join(q(part) for part in path.split("/")))
    ]


@dataclass
class Package:
    """The source tree read once: what exists, for checks that follow references."""

    root: Path
    source_api_version: str
    files: dict[Path, ET.Element] = field(default_factory=dict)
    unreadable: dict[Path, str] = field(default_factory=dict)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def objects(self) -> set[str]:
        return {path.name for path in (self.root / "objects").iterdir() if path.is_dir()}

    def fields_of(self, sobject: str) -> dict[str, ET.Element]:
        return {
            path.name.removesuffix(".field-meta.xml"): element
            for path, element in self.files.items()
            if path.parent == self.root / "objects" / sobject / "fields"
        }

    def names(self, folder: str, suffix: str) -> set[str]:
        directory = self.root / folder
        if not directory.is_dir():
            return set()
        return {path.name.removesuffix(suffix) for path in directory.glob(f"*{suffix}")}


def inventory(root: Path, source_api_version: str) -> Package:
    package = Package(root, source_api_version)
    for path in sorted(root.rglob("*.xml")):
        try:
            package.files[path] = read_xml(path)
        except ET.ParseError as exc:
            package.unreadable[path] = str(exc)
    return package


def expected_type(relative: str) -> str | None:
    for pattern, type_name in LAYOUT:
        if pattern.match(relative):
            return type_name
    return None


Rule = Callable[[Package, Path, ET.Element], Iterator[str]]


def problems(package: Package) -> list[str]:
    found = [
        f"{package.relative(path)}: not well-formed XML: {why}"
        for path, why in package.unreadable.items()
    ]
    for path, element in package.files.items():
        relative = package.relative(path)
        type_name = expected_type(relative)
        if type_name is None:
            found.append(f"{relative}: not a metadata file this package knows where to put")
            continue
        if element.tag != q(type_name):
            found.append(f'{relative}: root element must be <{type_name} xmlns="{NS}">')
            continue
        found += [f"{relative}: {problem}" for problem in RULES[type_name](package, path, element)]
    found += [f"{relative}: {problem}" for relative, problem in unpaired_sources(package)]
    return found


def unpaired_sources(package: Package) -> Iterator[tuple[str, str]]:
    for folder, suffix in SOURCE_SUFFIXES.items():
        directory = package.root / folder
        for source in directory.glob(f"*{suffix}"):
            if not source.with_name(source.name + "-meta.xml").is_file():
                yield package.relative(source), f"has no {source.name}-meta.xml"
        for meta in directory.glob(f"*{suffix}-meta.xml"):
            if not meta.with_name(meta.name.removesuffix("-meta.xml")).is_file():
                yield package.relative(meta), f"describes a missing {suffix} file"


def required(element: ET.Element, *tags: str) -> Iterator[str]:
    for tag in tags:
        if not text_of(element, tag):
            yield f"<{tag}> is required"


def boolean(element: ET.Element, tag: str) -> Iterator[str]:
    value = text_of(element, tag)
    if value is not None and value not in ("true", "false"):
        yield f"<{tag}> must be true or false, not {value!r}"


def apex_meta(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    yield from required(element, "apiVersion", "status")
    version = text_of(element, "apiVersion")
    if version and version != package.source_api_version:
        yield (
            f"<apiVersion>{version}</apiVersion> differs from sfdx-project.json's "
            f"sourceApiVersion {package.source_api_version}"
        )
    status = text_of(element, "status")
    if status and status != "Active":
        yield f"<status> must be Active (is {status}), or the code does not run"


def custom_object(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    name = path.parent.name
    yield from required(element, "label")
    if name.endswith("__e"):
        yield from required(element, "pluralLabel", "deploymentStatus", "eventType")
        yield from one_of(element, "eventType", EVENT_TYPES)
        yield from one_of(element, "publishBehavior", PUBLISH_BEHAVIOURS, needed=True)
    elif name.endswith("__mdt"):
        yield from required(element, "pluralLabel", "visibility")
        yield from one_of(element, "visibility", {"Public", "Protected", "PackageProtected"})
    elif text_of(element, "customSettingsType") is not None:
        yield from one_of(element, "customSettingsType", {"Hierarchy", "List"})
        yield from one_of(element, "visibility", {"Public", "Protected"}, needed=True)
    elif name.endswith("__c"):
        yield from required(element, "pluralLabel", "deploymentStatus", "sharingModel")
        yield from required(element, "nameField")
    else:
        yield f"{name} is a standard object: only its fields belong in the package"


def one_of(
    element: ET.Element, tag: str, allowed: set[str], *, needed: bool = False
) -> Iterator[str]:
    value = text_of(element, tag)
    if value is None:
        if needed:
            yield f"<{tag}> is required (one of {sorted(allowed)})"
    elif value not in allowed:
        yield f"<{tag}> must be one of {sorted(allowed)}, not {value!r}"


def custom_field(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    sobject = path.parent.parent.name
    file_name = path.name.removesuffix(".field-meta.xml")
    yield from required(element, "fullName", "label", "type")
    if text_of(element, "fullName") not in (None, file_name):
        yield f"<fullName> must be the file's name {file_name}"
    if not file_name.endswith("__c") or not API_NAME.match(file_name.removesuffix("__c")):
        yield f"{file_name} is not a custom field API name (letters, digits, single _; ends __c)"
    field_type = text_of(element, "type")
    if field_type and field_type not in FIELD_TYPES:
        yield f"<type>{field_type}</type> is not a type this package uses ({sorted(FIELD_TYPES)})"
    for tag in ("externalId", "unique", "required", "caseSensitive"):
        yield from boolean(element, tag)
    yield from field_shape(element, field_type)
    if sobject.endswith("__mdt") and not text_of(element, "fieldManageability"):
        yield "<fieldManageability> is required on a custom metadata field"
    if sobject.endswith("__e") and text_of(element, "unique") == "true":
        yield "platform event fields cannot be unique"
    if sobject not in STANDARD_OBJECTS and sobject not in package.objects():
        yield f"belongs to an object {sobject} that the package does not define"


def field_shape(element: ET.Element, field_type: str | None) -> Iterator[str]:
    length = text_of(element, "length")
    if field_type in TEXT_MAX:
        if length is None or not length.isdigit():
            yield f"<length> is required for a {field_type} field"
        elif not 1 <= int(length) <= TEXT_MAX[field_type]:
            yield f"<length> must be 1..{TEXT_MAX[field_type]} for a {field_type} field"
    elif length is not None:
        yield f"<length> does not apply to a {field_type} field"
    if field_type == "Checkbox" and text_of(element, "defaultValue") not in ("true", "false"):
        yield "<defaultValue> true or false is required for a Checkbox field"
    if text_of(element, "unique") == "true" and field_type != "Text":
        yield "only Text fields here may be unique"


def custom_metadata(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    type_name, _record = path.name.removesuffix(".md-meta.xml").split(".")
    fields = package.fields_of(f"{type_name}__mdt")
    if f"{type_name}__mdt" not in package.objects():
        yield f"is a record of {type_name}__mdt, which the package does not define"
    yield from required(element, "label")
    yield from boolean(element, "protected")
    for value in element.iterfind(q("values")):
        field_name = text_of(value, "field")
        if field_name not in fields:
            yield f"sets {field_name}, which is not a field of {type_name}__mdt"
            continue
        yield from metadata_value(value, field_name, text_of(fields[field_name], "type"))


def metadata_value(value: ET.Element, field_name: str, field_type: str | None) -> Iterator[str]:
    stored = value.find(q("value"))
    if stored is None:
        yield f'{field_name}: <value> is required (xsi:nil="true" for none)'
        return
    if stored.get(f"{{{XSI}}}nil") == "true":
        return
    wanted = {"Checkbox": "xsd:boolean"}.get(field_type or "", "xsd:string")
    if stored.get(f"{{{XSI}}}type") != wanted:
        yield f'{field_name}: a {field_type} value needs xsi:type="{wanted}"'
    if wanted == "xsd:boolean" and (stored.text or "").strip() not in ("true", "false"):
        yield f"{field_name}: must be true or false"


def named_credential(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    yield from required(element, "label", "namedCredentialType")
    kind = text_of(element, "namedCredentialType")
    for tag in (
        "allowMergeFieldsInBody",
        "allowMergeFieldsInHeader",
        "generateAuthorizationHeader",
    ):
        yield from boolean(element, tag)
    if kind == "Legacy":
        yield from required(element, "endpoint")
        return
    if kind not in ("SecuredEndpoint", "PrivateEndpoint"):
        yield f"<namedCredentialType> {kind!r} is not SecuredEndpoint, PrivateEndpoint or Legacy"
        return
    if text_of(element, "endpoint") is not None:
        yield "<endpoint> is ignored on a SecuredEndpoint: put the URL in a Url parameter"
    parameters = {
        text_of(parameter, "parameterType"): parameter
        for parameter in element.iterfind(q("namedCredentialParameters"))
    }
    url = parameters.get("Url")
    if url is None or not (text_of(url, "parameterValue") or "").startswith("https://"):
        yield "needs a namedCredentialParameters of parameterType Url with an https:// value"
    authentication = parameters.get("Authentication")
    external = None if authentication is None else text_of(authentication, "externalCredential")
    if external is None:
        yield (
            "needs a namedCredentialParameters of parameterType Authentication "
            "naming an externalCredential"
        )
    elif external not in package.names("externalCredentials", ".externalCredential-meta.xml"):
        yield f"names external credential {external}, which the package does not define"


def external_credential(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    yield from required(element, "label", "authenticationProtocol")
    yield from one_of(element, "authenticationProtocol", AUTH_PROTOCOLS)
    principals = principals_of(element)
    if not principals:
        yield f"needs an externalCredentialParameters of parameterType {sorted(PRINCIPAL_TYPES)}"
    for parameter in element.iterfind(q("externalCredentialParameters")):
        yield from required(parameter, "parameterName", "parameterType")
        if text_of(parameter, "parameterType") in PRINCIPAL_TYPES:
            yield from required(parameter, "parameterGroup", "sequenceNumber")


def principals_of(element: ET.Element) -> set[str]:
    return {
        text_of(parameter, "parameterName") or ""
        for parameter in element.iterfind(q("externalCredentialParameters"))
        if text_of(parameter, "parameterType") in PRINCIPAL_TYPES
    }


def permission_set(package: Package, path: Path, element: ET.Element) -> Iterator[str]:
    yield from required(element, "label")
    for access in element.iterfind(q("fieldPermissions")):
        yield from required(access, "field", "readable", "editable")
        target = text_of(access, "field") or "."
        sobject, _, field_name = target.partition(".")
        if field_name not in package.fields_of(sobject):
            yield f"fieldPermissions names {target}, which the package does not define"
        if text_of(access, "editable") == "true" and text_of(access, "readable") != "true":
            yield f"{target}: an editable field must be readable"
    for access in element.iterfind(q("externalCredentialPrincipalAccesses")):
        yield from required(access, "enabled", "externalCredentialPrincipal")
        credential, _, principal = (text_of(access, "externalCredentialPrincipal") or "").partition(
            "-"
        )
        credential_file = (
            package.root / "externalCredentials" / f"{credential}.externalCredential-meta.xml"
        )
        if credential_file not in package.files or principal not in principals_of(
            package.files[credential_file]
        ):
            yield f"grants principal {credential}-{principal}, which the package does not define"
    for access in element.iterfind(q("classAccesses")):
        if text_of(access, "apexClass") not in package.names("classes", ".cls"):
            yield f"classAccesses names {text_of(access, 'apexClass')}, which is not in the package"
    for permission in element.iterfind(q("userPermissions")):
        yield from required(permission, "enabled", "name")


RULES: dict[str, Rule] = {
    "ApexClass": apex_meta,
    "ApexTrigger": apex_meta,
    "CustomObject": custom_object,
    "CustomField": custom_field,
    "CustomMetadata": custom_metadata,
    "NamedCredential": named_credential,
    "ExternalCredential": external_credential,
    "PermissionSet": permission_set,
}
