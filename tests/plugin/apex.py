"""Reading the Salesforce-side package's Apex through a real Apex parser.

`parse_apex` runs `salesforce-plugin/scripts/parse-apex.mjs` (`@apexdevtools/apex-parser`, the
ANTLR grammar of the Apex Dev Tools) and returns its report; `ApexClass` gives the declarations of
a parsed class; `ApexEvaluator` runs the straight-line static methods the contract depends on (the
signature) with Python's own HMAC, so the tests compare what the Apex *computes*, not how it reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "salesforce-plugin"
PARSER_SCRIPT = PLUGIN / "scripts" / "parse-apex.mjs"
SOURCE = PLUGIN / "force-app" / "main" / "default"
PARSER_PACKAGE = PLUGIN / "node_modules" / "@apexdevtools" / "apex-parser"

ApexValue = str | int | bytes | bool | None


class ApexSetupError(RuntimeError):
    """The parser cannot run here: says what to install."""


class UnsupportedApexError(ValueError):
    """The evaluator met a construct it does not model; the message names it and its line."""


@dataclass(frozen=True)
class Node:
    """A node of the parser's tree: a rule with children, or a token."""

    raw: Mapping[str, Any]

    @property
    def rule(self) -> str | None:
        rule: str | None = self.raw.get("rule")
        return rule

    @property
    def token(self) -> str | None:
        token: str | None = self.raw.get("token")
        return token

    @property
    def line(self) -> int:
        return int(self.raw.get("line", 0))

    @property
    def children(self) -> list[Node]:
        return [Node(child) for child in self.raw.get("children", ())]

    def rule_children(self, rule: str) -> list[Node]:
        return [child for child in self.children if child.rule == rule]

    def child(self, rule: str) -> Node:
        found = self.rule_children(rule)
        if len(found) != 1:
            raise UnsupportedApexError(f"line {self.line}: expected one {rule} in {self.rule}")
        return found[0]

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, rule: str) -> Iterator[Node]:
        return (node for node in self.walk() if node.rule == rule)

    def tokens(self) -> list[str]:
        return [node.token for node in self.walk() if node.token is not None]

    @property
    def text(self) -> str:
        """The node's source without layout: `a.b(c, 'd')` reads `a.b(c,'d')`."""
        return "".join(self.tokens())


@dataclass(frozen=True)
class ApexFile:
    path: Path
    unit: str
    errors: tuple[Mapping[str, Any], ...]
    tree: Node | None


@dataclass(frozen=True)
class ParseReport:
    parser: str
    files: tuple[ApexFile, ...]

    def by_name(self) -> dict[str, ApexFile]:
        return {file.path.stem: file for file in self.files}


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise ApexSetupError(
            "node is not installed: apt-get install nodejs npm, then scripts/setup"
        )
    if not PARSER_PACKAGE.is_dir():
        raise ApexSetupError(
            f"{PARSER_PACKAGE.relative_to(REPO)} is missing: run scripts/setup "
            "(or `npm ci` in salesforce-plugin/)"
        )
    return node


def parse_apex(paths: Sequence[Path], *, tree: bool = True) -> ParseReport:
    """Parse .cls/.trigger files (or folders of them); syntax errors are in the report."""
    command = [node_executable(), str(PARSER_SCRIPT)]
    if tree:
        command.append("--tree")
    command += [str(path) for path in paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode not in (0, 1):
        raise ApexSetupError(f"parse-apex.mjs exited {done.returncode}: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    return ParseReport(
        parser=report["parser"],
        files=tuple(
            ApexFile(
                path=Path(item["path"]),
                unit=item["unit"],
                errors=tuple(item["errors"]),
                tree=Node(item["tree"]) if "tree" in item else None,
            )
            for item in report["files"]
        ),
    )


# --- declarations -------------------------------------------------------------------------


def _modifiers(declaration: Node) -> frozenset[str]:
    words = set()
    for modifier in declaration.rule_children("Modifier"):
        words.add(modifier.text.lower())
    return frozenset(words)


@dataclass(frozen=True)
class ApexField:
    name: str
    type: str
    modifiers: frozenset[str]
    initializer: Node | None

    @property
    def is_static(self) -> bool:
        return "static" in self.modifiers


@dataclass(frozen=True)
class ApexMethod:
    name: str
    modifiers: frozenset[str]
    parameters: tuple[str, ...]
    body: Node
    is_constructor: bool


@dataclass
class ApexClass:
    name: str
    modifiers: frozenset[str]
    fields: dict[str, ApexField] = field(default_factory=dict)
    methods: list[ApexMethod] = field(default_factory=list)
    inner: dict[str, ApexClass] = field(default_factory=dict)

    @classmethod
    def of_file(cls, file: ApexFile) -> ApexClass:
        if file.tree is None or file.unit != "class":
            raise UnsupportedApexError(f"{file.path}: not a parsed class")
        declaration = file.tree.child("TypeDeclaration")
        return cls._of_declaration(declaration.child("ClassDeclaration"), _modifiers(declaration))

    @classmethod
    def _of_declaration(cls, declaration: Node, modifiers: frozenset[str]) -> ApexClass:
        apex_class = cls(name=declaration.child("Id").text, modifiers=modifiers)
        for body_declaration in declaration.child("ClassBody").rule_children(
            "ClassBodyDeclaration"
        ):
            apex_class._add_member(body_declaration)
        return apex_class

    def _add_member(self, body_declaration: Node) -> None:
        modifiers = _modifiers(body_declaration)
        members = body_declaration.rule_children("MemberDeclaration")
        if not members:
            return
        member = members[0].children[0]
        if member.rule == "FieldDeclaration":
            type_name = member.child("TypeRef").text
            for declarator in member.child("VariableDeclarators").rule_children(
                "VariableDeclarator"
            ):
                expressions = [child for child in declarator.children[2:] if child.rule]
                name = declarator.child("Id").text
                initializer = expressions[0] if expressions else None
                self.fields[name] = ApexField(name, type_name, modifiers, initializer)
        elif member.rule in ("MethodDeclaration", "ConstructorDeclaration"):
            is_constructor = member.rule == "ConstructorDeclaration"
            name = member.child("QualifiedName" if is_constructor else "Id").text
            parameters = tuple(
                parameter.child("Id").text
                for parameter in member.child("FormalParameters").find("FormalParameter")
            )
            self.methods.append(
                ApexMethod(name, modifiers, parameters, member.child("Block"), is_constructor)
            )
        elif member.rule == "ClassDeclaration":
            inner = ApexClass._of_declaration(member, modifiers)
            self.inner[inner.name] = inner

    def instance_fields(self) -> set[str]:
        return {name for name, declared in self.fields.items() if not declared.is_static}

    def method(self, name: str) -> ApexMethod:
        found = [method for method in self.methods if method.name == name]
        if len(found) != 1:
            raise UnsupportedApexError(f"{self.name}: expected one method {name}, found {found}")
        return found[0]

    def constructors(self) -> list[ApexMethod]:
        return [method for method in self.methods if method.is_constructor]


def assigned_this_fields(method: ApexMethod) -> set[str]:
    """Names `x` of every `this.x = ...` in the method."""
    assigned = set()
    for assignment in method.body.find("AssignExpression"):
        target = assignment.children[0]
        if target.rule == "DotExpression" and target.children[0].text == "this":
            assigned.add(target.children[2].text)
    return assigned


@dataclass(frozen=True)
class MethodCall:
    """`target.name(arguments)`; target is the source text left of the dot ('' when none)."""

    target: str
    name: str
    arguments: tuple[Node, ...]
    line: int


def method_calls(root: Node) -> Iterator[MethodCall]:
    for dot in root.find("DotExpression"):
        call = dot.children[2]
        if call.rule != "DotMethodCall":
            continue
        argument_list = call.rule_children("ExpressionList")
        arguments = (
            tuple(child for child in argument_list[0].children if child.rule)
            if argument_list
            else ()
        )
        yield MethodCall(dot.children[0].text, call.child("AnyId").text, arguments, dot.line)


def string_literals(root: Node) -> list[str]:
    return [
        apex_string(token)
        for token in root.tokens()
        if token.startswith("'") and token.endswith("'") and len(token) >= 2
    ]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def apex_string(literal: str) -> str:
    """The value of an Apex string literal such as `'it\\'s'`."""

    def unescape(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped.startswith("u"):
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", unescape, literal[1:-1])


# --- evaluation ---------------------------------------------------------------------------

_MAC_ALGORITHMS: Mapping[str, Callable[[], Any]] = {
    "hmacMD5": hashlib.md5,
    "hmacSHA1": hashlib.sha1,
    "hmacSHA256": hashlib.sha256,
    "hmacSHA512": hashlib.sha512,
}


def _apex_to_string(value: ApexValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        raise UnsupportedApexError("String.valueOf(Blob) is not a conversion Apex offers")
    return str(value)


def _blob(value: ApexValue, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise UnsupportedApexError(f"{what} needs a Blob, got {value!r}")
    return value


def _generate_mac(algorithm: ApexValue, data: ApexValue, key: ApexValue) -> bytes:
    if algorithm not in _MAC_ALGORITHMS:
        raise UnsupportedApexError(f"Crypto.generateMac algorithm {algorithm!r}")
    digest = _MAC_ALGORITHMS[str(algorithm)]
    return hmac.new(_blob(key, "a MAC key"), _blob(data, "MAC input"), digest).digest()


def _blob_value_of(text: ApexValue) -> bytes:
    if not isinstance(text, str):
        raise UnsupportedApexError(f"Blob.valueOf needs a String, got {text!r}")
    return text.encode("utf-8")


_STATIC_CALLS: Mapping[tuple[str, str], Callable[..., ApexValue]] = {
    ("Blob", "valueOf"): _blob_value_of,
    ("String", "valueOf"): _apex_to_string,
    ("Crypto", "generateMac"): _generate_mac,
    ("EncodingUtil", "convertToHex"): lambda blob: _blob(blob, "convertToHex").hex(),
    ("EncodingUtil", "base64Encode"): lambda blob: base64.b64encode(
        _blob(blob, "base64Encode")
    ).decode(),
}


class _Return(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, value: ApexValue) -> None:
        self.value = value


class ApexEvaluator:
    """Runs straight-line static Apex methods built from literals, locals, `+` and a few
    platform calls (Blob.valueOf, String.valueOf, Crypto.generateMac, EncodingUtil). Anything
    else raises `UnsupportedApexError`, so a rewrite the model cannot follow fails loudly rather
    than passing unchecked."""

    def __init__(self, classes: Mapping[str, ApexClass]) -> None:
        self.classes = classes

    def call(self, class_name: str, method_name: str, *arguments: ApexValue) -> ApexValue:
        method = self.classes[class_name].method(method_name)
        if "static" not in method.modifiers:
            raise UnsupportedApexError(f"{class_name}.{method_name} is not static")
        if len(arguments) != len(method.parameters):
            raise UnsupportedApexError(f"{class_name}.{method_name} takes {method.parameters}")
        scope: dict[str, ApexValue] = dict(zip(method.parameters, arguments, strict=True))
        try:
            for statement in method.body.rule_children("Statement"):
                self._run(statement.children[0], scope, class_name)
        except _Return as returned:
            return returned.value
        raise UnsupportedApexError(f"{class_name}.{method_name} returned nothing")

    def constant(self, class_name: str, field_name: str) -> ApexValue:
        declared = self.classes[class_name].fields.get(field_name)
        if declared is None or not {"static", "final"} <= declared.modifiers:
            raise UnsupportedApexError(f"{class_name}.{field_name} is not a static final field")
        if declared.initializer is None:
            raise UnsupportedApexError(f"{class_name}.{field_name} has no initializer")
        return self.evaluate(declared.initializer, {}, class_name)

    def _run(self, statement: Node, scope: dict[str, ApexValue], class_name: str) -> None:
        if statement.rule == "LocalVariableDeclarationStatement":
            declaration = statement.child("LocalVariableDeclaration")
            for declarator in declaration.child("VariableDeclarators").rule_children(
                "VariableDeclarator"
            ):
                expressions = [child for child in declarator.children[2:] if child.rule]
                value = self.evaluate(expressions[0], scope, class_name) if expressions else None
                scope[declarator.child("Id").text] = value
        elif statement.rule == "ReturnStatement":
            expression = [child for child in statement.children if child.rule]
            raise _Return(self.evaluate(expression[0], scope, class_name) if expression else None)
        else:
            raise UnsupportedApexError(f"line {statement.line}: statement {statement.rule}")

    def evaluate(
        self, expression: Node, scope: Mapping[str, ApexValue], class_name: str
    ) -> ApexValue:
        rule = expression.rule
        if rule == "PrimaryExpression":
            return self._primary(expression.children[0], scope, class_name)
        if rule == "SubExpression":
            return self.evaluate(expression.children[1], scope, class_name)
        if rule == "Arth2Expression":
            left, operator, right = expression.children
            return self._add(
                self.evaluate(left, scope, class_name),
                operator.text,
                self.evaluate(right, scope, class_name),
            )
        if rule == "DotExpression":
            return self._dot(expression, scope, class_name)
        raise UnsupportedApexError(f"line {expression.line}: expression {rule}")

    def _primary(self, primary: Node, scope: Mapping[str, ApexValue], class_name: str) -> ApexValue:
        if primary.rule == "LiteralPrimary":
            return _literal(primary.text)
        if primary.rule == "IdPrimary":
            name = primary.text
            if name in scope:
                return scope[name]
            return self.constant(class_name, name)
        raise UnsupportedApexError(f"line {primary.line}: {primary.rule}")

    @staticmethod
    def _add(left: ApexValue, operator: str, right: ApexValue) -> ApexValue:
        if operator == "+" and (isinstance(left, str) or isinstance(right, str)):
            return _apex_to_string(left) + _apex_to_string(right)
        if isinstance(left, int) and isinstance(right, int):
            return left + right if operator == "+" else left - right
        raise UnsupportedApexError(f"{left!r} {operator} {right!r}")

    def _dot(self, expression: Node, scope: Mapping[str, ApexValue], class_name: str) -> ApexValue:
        target, _, member = expression.children
        owner = target.text
        if member.rule == "AnyId":
            if owner in self.classes:
                return self.constant(owner, member.text)
            raise UnsupportedApexError(f"line {expression.line}: field {owner}.{member.text}")
        name = member.child("AnyId").text
        argument_list = member.rule_children("ExpressionList")
        arguments = [
            self.evaluate(argument, scope, class_name)
            for argument in (argument_list[0].children if argument_list else ())
            if argument.rule
        ]
        if (owner, name) in _STATIC_CALLS:
            return _STATIC_CALLS[owner, name](*arguments)
        if owner in self.classes:
            return self.call(owner, name, *arguments)
        raise UnsupportedApexError(f"line {expression.line}: call {owner}.{name}")


def _literal(text: str) -> ApexValue:
    if text.startswith("'"):
        return apex_string(text)
    if re.fullmatch(r"\d+[lL]?", text):
        return int(text.rstrip("lL"))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "null":
        return None
    raise UnsupportedApexError(f"literal {text}")
