"""The SOQL subset the emulator answers, parsed and compiled to parameterised SQLite.

Supported: `SELECT` field lists or `COUNT()`, `FROM` one sObject, `WHERE` with AND/OR/NOT and
parentheses (mixing AND and OR at one level needs parentheses, as in SOQL), `= != <> < > <= >=`,
`IN`/`NOT IN`, `LIKE`, `null`, `true`/`false`, date and dateTime literals, the date literals
`TODAY`, `YESTERDAY`, `TOMORROW`, `LAST_N_DAYS:n`, `NEXT_N_DAYS:n`, `N_DAYS_AGO:n` (in UTC, the
org's time zone), `ORDER BY` with ASC/DESC and NULLS FIRST/LAST, `LIMIT` and `OFFSET`.

SOQL's own semantics are kept: text compares case-insensitively, `field != value` and
`NOT IN` include records where the field is null, and every comparison is two-valued, so `NOT`
never drops a record for being null. Field and object names are checked against the describe
metadata, so a typo answers `INVALID_FIELD`/`INVALID_TYPE` with Salesforce's message and
position, and a syntax error `MALFORMED_QUERY`. Column names in the generated SQL come only from
the field specs; every value is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from salesforce_emulator import ids
from salesforce_emulator.errors import ApiError
from salesforce_emulator.sobjects import TASK, FieldSpec, SObjectSpec, sobject
from salesforce_emulator.stamps import (
    MILLIS_PER_DAY,
    floor_day,
    parse_instant,
    to_datetime,
)
from salesforce_emulator.store import LIKE_ESCAPED_PERCENT, LIKE_ESCAPED_UNDERSCORE

TokenKind = Literal["ident", "string", "number", "date", "datetime", "op", "punct", "end"]

_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    |(?P<string>')
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),:])
    """,
    re.VERBOSE,
)
_ESCAPES: Final = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "%": LIKE_ESCAPED_PERCENT,
    "_": LIKE_ESCAPED_UNDERSCORE,
}
_KEYWORDS: Final = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "like",
        "order",
        "by",
        "asc",
        "desc",
        "nulls",
        "first",
        "last",
        "limit",
        "offset",
        "null",
        "true",
        "false",
    }
)
_RELATIVE_DAYS: Final = {"today": (0, 1), "yesterday": (-1, 0), "tomorrow": (1, 2)}
_N_DAYS: Final = frozenset({"last_n_days", "next_n_days", "n_days_ago"})
_TYPE_NAMES: Final = {
    "string": "string",
    "id": "id",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
    "int": "double",
}


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    value: Any
    position: int


@dataclass(frozen=True)
class Value:
    kind: Literal["string", "number", "boolean", "null", "date", "datetime", "range"]
    value: Any
    position: int


@dataclass(frozen=True)
class Compare:
    spec: FieldSpec
    operator: str
    value: Value


@dataclass(frozen=True)
class InList:
    spec: FieldSpec
    negated: bool
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Like:
    spec: FieldSpec
    pattern: str


@dataclass(frozen=True)
class Not:
    condition: Condition


@dataclass(frozen=True)
class Junction:
    connector: Literal["AND", "OR"]
    parts: tuple[Condition, ...]


Condition = Compare | InList | Like | Not | Junction


@dataclass(frozen=True)
class OrderKey:
    spec: FieldSpec
    descending: bool
    nulls_first: bool


@dataclass
class SoqlQuery:
    text: str
    sobject: SObjectSpec
    fields: tuple[FieldSpec, ...]
    count_only: bool
    where: Condition | None = None
    order: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None

    def to_sql(self, *, include_deleted: bool) -> tuple[str, list[Any]]:
        params: list[Any] = []
        clauses = []
        if self.sobject.has_recycle_bin and not include_deleted:
            clauses.append('"IsDeleted" = 0')
        if self.where is not None:
            clauses.append(_compile(self.where, params))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        table = f'"{self.sobject.name}"'
        if self.count_only:
            return f"SELECT COUNT(*) AS total FROM {table}{where}", params
        columns = ", ".join(f'"{name}"' for name in dict.fromkeys(("Id", *self.field_names)))
        order_terms = [
            f'"{key.spec.name}"{_collate(key.spec)} {"DESC" if key.descending else "ASC"} '
            f"NULLS {'FIRST' if key.nulls_first else 'LAST'}"
            for key in self.order
        ]
        order_terms.append('"Id" ASC')
        sql = f"SELECT {columns} FROM {table}{where} ORDER BY {', '.join(order_terms)}"
        if self.limit is not None or self.offset is not None:
            sql += " LIMIT ? OFFSET ?"
            params.extend([-1 if self.limit is None else self.limit, self.offset or 0])
        return sql, params

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)


def _collate(spec: FieldSpec) -> str:
    return " COLLATE SOQL" if spec.soql_kind == "string" else ""


def _compile(condition: Condition, params: list[Any]) -> str:
    if isinstance(condition, Junction):
        return (
            "("
            + f" {condition.connector} ".join(_compile(p, params) for p in condition.parts)
            + ")"
        )
    if isinstance(condition, Not):
        return f"(NOT {_compile(condition.condition, params)})"
    if isinstance(condition, Like):
        params.append(condition.pattern)
        return f'COALESCE(soql_like("{condition.spec.name}", ?), 0)'
    if isinstance(condition, InList):
        column = f'"{condition.spec.name}"{_collate(condition.spec)}'
        values = [v for v in condition.values if v.kind != "null"]
        has_null = len(values) != len(condition.values)
        params.extend(_stored(condition.spec, v) for v in values)
        marks = ", ".join("?" for _ in values) or "NULL"
        if condition.negated:
            null_rule = "0" if has_null else "1"
            return f"COALESCE({column} NOT IN ({marks}), {null_rule})"
        null_rule = f'"{condition.spec.name}" IS NULL' if has_null else "0"
        return f"(COALESCE({column} IN ({marks}), 0) OR {null_rule})"
    return _compile_compare(condition, params)


def _compile_compare(condition: Compare, params: list[Any]) -> str:
    spec, operator, value = condition.spec, condition.operator, condition.value
    column = f'"{spec.name}"'
    if value.kind == "null":
        if operator == "=":
            return f"({column} IS NULL)"
        if operator == "!=":
            return f"({column} IS NOT NULL)"
        return "0"
    if value.kind == "range":
        low, high = (_range_bound(spec, bound) for bound in value.value)
        if operator in ("=", "!="):
            params.extend([low, high])
            inside = f"({column} >= ? AND {column} < ?)"
            return inside if operator == "=" else f"COALESCE(NOT {inside}, 1)"
        bound, sql_operator = {
            "<": (low, "<"),
            "<=": (high, "<"),
            ">": (high, ">="),
            ">=": (low, ">="),
        }[operator]
        params.append(bound)
        return f"COALESCE({column} {sql_operator} ?, 0)"
    params.append(_stored(spec, value))
    default = "1" if operator == "!=" else "0"
    return f"COALESCE({column} {operator} ?{_collate(spec)}, {default})"


def _range_bound(spec: FieldSpec, bound: int) -> Any:
    if spec.soql_kind == "date":
        return to_datetime(bound).date().isoformat()
    return bound


def _stored(spec: FieldSpec, value: Value) -> Any:
    if value.kind == "string":
        text = str(value.value)
        return text.replace(LIKE_ESCAPED_PERCENT, "%").replace(LIKE_ESCAPED_UNDERSCORE, "_")
    if value.kind == "boolean":
        return 1 if value.value else 0
    return value.value


class _Parser:
    def __init__(self, text: str, *, now: int) -> None:
        self.text = text
        self.now = now
        self.tokens = _tokenize(text)
        self.index = 0
        self.sobject: SObjectSpec = TASK

    # -- errors ------------------------------------------------------------------------------

    def error(self, code: str, message: str, position: int) -> ApiError:
        row = self.text.count("\n", 0, position) + 1
        line_start = self.text.rfind("\n", 0, position) + 1
        line_end = self.text.find("\n", position)
        line = self.text[line_start : None if line_end < 0 else line_end]
        column = position - line_start + 1
        detail = f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"
        return ApiError(400, code, detail)

    def unexpected(self, token: Token | None = None) -> ApiError:
        token = token or self.peek()
        if token.kind == "end":
            return self.error("MALFORMED_QUERY", "unexpected token: <EOF>", token.position)
        return self.error("MALFORMED_QUERY", f"unexpected token: {token.text}", token.position)

    # -- token stream ------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.text.lower() in words

    def keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.unexpected()
        return self.advance()

    def punct(self, char: str) -> Token:
        token = self.peek()
        if token.kind != "punct" or token.text != char:
            raise self.unexpected()
        return self.advance()

    # -- grammar -----------------------------------------------------------------------------

    def parse(self) -> SoqlQuery:
        self.keyword("select")
        select_tokens = self.select_list()
        self.keyword("from")
        spec = self.from_object()
        fields: list[FieldSpec] = []
        for token in select_tokens:
            resolved = self.resolve(token)
            if resolved in fields:
                raise self.error(
                    "MALFORMED_QUERY", f"duplicate field selected: {resolved.name}", token.position
                )
            fields.append(resolved)
        query = SoqlQuery(self.text, spec, tuple(fields), count_only=select_tokens == [])
        if self.at_keyword("where"):
            self.advance()
            query.where = self.condition()
        if self.at_keyword("order"):
            self.advance()
            self.keyword("by")
            query.order.append(self.order_key())
            while self.peek().text == ",":
                self.advance()
                query.order.append(self.order_key())
        if self.at_keyword("limit"):
            self.advance()
            query.limit = self.integer()
        if self.at_keyword("offset"):
            self.advance()
            query.offset = self.integer()
        if self.peek().kind != "end":
            raise self.unexpected()
        return query

    def select_list(self) -> list[Token]:
        """The selected field tokens; empty for `COUNT()`."""
        if self.at_keyword("count") and self.peek(1).text == "(":
            self.advance()
            self.punct("(")
            if self.peek().text != ")":
                raise self.error(
                    "MALFORMED_QUERY",
                    "the emulator answers COUNT() only, not COUNT(field) or other aggregates",
                    self.peek().position,
                )
            self.punct(")")
            return []
        tokens = [self.field_token()]
        while self.peek().text == ",":
            self.advance()
            tokens.append(self.field_token())
        return tokens

    def from_object(self) -> SObjectSpec:
        token = self.advance()
        if token.kind != "ident" or token.text.lower() in _KEYWORDS:
            raise self.unexpected(token)
        spec = sobject(token.text)
        if spec is None:
            raise self.error(
                "INVALID_TYPE",
                f"sObject type '{token.text}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
                token.position,
            )
        self.sobject = spec
        return spec

    def field_token(self) -> Token:
        token = self.advance()
        if token.kind != "ident" or token.text.lower() in _KEYWORDS:
            raise self.unexpected(token)
        return token

    def resolve(self, token: Token) -> FieldSpec:
        if "." in token.text:
            relationship = token.text.split(".", 1)[0]
            raise self.error(
                "INVALID_FIELD",
                f"Didn't understand relationship '{relationship}' in field path. The emulator "
                "answers fields of the queried object only.",
                token.position,
            )
        spec = self.sobject.get_field(token.text)
        if spec is None:
            raise self.error(
                "INVALID_FIELD",
                f"No such column '{token.text}' on entity '{self.sobject.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
                token.position,
            )
        return spec

    def integer(self) -> int:
        token = self.advance()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)

    def order_key(self) -> OrderKey:
        token = self.field_token()
        spec = self.resolve(token)
        if spec.type == "textarea":
            raise self.error(
                "INVALID_FIELD",
                f"field '{spec.name}' can not be sorted in a query call",
                token.position,
            )
        descending = False
        if self.at_keyword("asc", "desc"):
            descending = self.advance().text.lower() == "desc"
        nulls_first = not descending
        if self.at_keyword("nulls"):
            self.advance()
            if not self.at_keyword("first", "last"):
                raise self.unexpected()
            nulls_first = self.advance().text.lower() == "first"
        return OrderKey(spec, descending, nulls_first)

    def condition(self) -> Condition:
        first = self.unary()
        parts = [first]
        connector: str | None = None
        while self.at_keyword("and", "or"):
            token = self.advance()
            word = token.text.upper()
            if connector is not None and word != connector:
                raise self.unexpected(token)
            connector = word
            parts.append(self.unary())
        if connector is None:
            return first
        return Junction("AND" if connector == "AND" else "OR", tuple(parts))

    def unary(self) -> Condition:
        if self.at_keyword("not"):
            self.advance()
            return Not(self.unary())
        if self.peek().text == "(":
            self.advance()
            inner = self.condition()
            self.punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Condition:
        token = self.field_token()
        spec = self.resolve(token)
        if spec.type == "textarea":
            raise self.error(
                "INVALID_FIELD",
                f"field '{spec.name}' can not be filtered in a query call",
                token.position,
            )
        if self.at_keyword("like"):
            self.advance()
            pattern = self.advance()
            if pattern.kind != "string":
                raise self.unexpected(pattern)
            if spec.soql_kind != "string":
                raise self.error(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid operator on {_TYPE_NAMES[spec.soql_kind]} field: LIKE",
                    token.position,
                )
            return Like(spec, str(pattern.value))
        negated = False
        if self.at_keyword("not") and self.peek(1).text.lower() == "in":
            self.advance()
            negated = True
        if self.at_keyword("in"):
            self.advance()
            self.punct("(")
            values = [self.checked(spec, self.literal())]
            while self.peek().text == ",":
                self.advance()
                values.append(self.checked(spec, self.literal()))
            self.punct(")")
            return InList(spec, negated, tuple(values))
        operator_token = self.advance()
        if operator_token.kind != "op":
            raise self.unexpected(operator_token)
        operator = "!=" if operator_token.text == "<>" else operator_token.text
        value = self.checked(spec, self.literal())
        if spec.soql_kind == "boolean" and operator not in ("=", "!="):
            raise self.error(
                "INVALID_QUERY_FILTER_OPERATOR",
                f"invalid operator on boolean field: {operator}",
                operator_token.position,
            )
        return Compare(spec, operator, value)

    def literal(self) -> Value:
        token = self.advance()
        simple: dict[str, Callable[[], Value]] = {
            "string": lambda: Value("string", token.value, token.position),
            "number": lambda: Value(
                "number",
                float(token.text) if "." in token.text else int(token.text),
                token.position,
            ),
            "date": lambda: Value("date", token.value, token.position),
            "datetime": lambda: Value("datetime", token.value, token.position),
        }
        if token.kind in simple:
            return simple[token.kind]()
        word = token.text.lower() if token.kind == "ident" else ""
        if word in ("true", "false"):
            return Value("boolean", word == "true", token.position)
        if word == "null":
            return Value("null", None, token.position)
        if word in _RELATIVE_DAYS:
            start, end = _RELATIVE_DAYS[word]
            return self.day_range(start, end, token.position)
        if word in _N_DAYS:
            self.punct(":")
            days = self.integer()
            start, end = {
                "last_n_days": (-days, 1),
                "next_n_days": (1, days + 1),
                "n_days_ago": (-days, -days + 1),
            }[word]
            return self.day_range(start, end, token.position)
        raise self.unexpected(token)

    def day_range(self, start_days: int, end_days: int, position: int) -> Value:
        today = floor_day(self.now)
        return Value(
            "range",
            (today + start_days * MILLIS_PER_DAY, today + end_days * MILLIS_PER_DAY),
            position,
        )

    def checked(self, spec: FieldSpec, value: Value) -> Value:
        kind = spec.soql_kind
        if value.kind == "null":
            return value
        if kind == "id":
            if value.kind != "string":
                raise self.type_error(spec, value)
            normalised = ids.normalise_id(str(value.value))
            if normalised is None:
                raise self.error(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {value.value}",
                    value.position,
                )
            return Value("string", normalised, value.position)
        expected = {
            "string": ("string",),
            "boolean": ("boolean",),
            "date": ("date", "range"),
            "datetime": ("datetime", "range"),
            "int": ("number",),
        }[kind]
        if value.kind not in expected:
            raise self.type_error(spec, value)
        return value

    def type_error(self, spec: FieldSpec, value: Value) -> ApiError:
        type_name = _TYPE_NAMES[spec.soql_kind]
        quoted = " and should not be enclosed in quotes" if value.kind == "string" else ""
        return self.error(
            "INVALID_FIELD",
            f"value of filter criterion for field '{spec.name}' must be of type {type_name}"
            f"{quoted}",
            value.position,
        )


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _error_at(text, position, f"unexpected token: {text[position]}")
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "space":
            position = match.end()
            continue
        if kind == "string":
            decoded, end = _read_string(text, position)
            tokens.append(Token("string", text[position:end], decoded, position))
            position = end
            continue
        value: Any = raw
        if kind == "datetime":
            try:
                value = parse_instant(raw, offset_required=True)
            except ValueError:
                raise _error_at(text, position, f"invalid dateTime: {raw}") from None
        elif kind == "date":
            try:
                value = date.fromisoformat(raw).isoformat()
            except ValueError:
                raise _error_at(text, position, f"invalid date: {raw}") from None
        tokens.append(Token(_kind(kind), raw, value, position))
        position = match.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


def _kind(name: str) -> TokenKind:
    kinds: dict[str, TokenKind] = {
        "datetime": "datetime",
        "date": "date",
        "number": "number",
        "ident": "ident",
        "op": "op",
        "punct": "punct",
    }
    return kinds[name]


def _read_string(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\":
            escaped = text[position + 1 : position + 2]
            if escaped not in _ESCAPES:
                raise _error_at(
                    text, position, f"Invalid string literal: {text[start : position + 2]}"
                )
            chars.append(_ESCAPES[escaped])
            position += 2
            continue
        if char == "'":
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    raise _error_at(text, start, "unexpected token: <EOF>")


def _error_at(text: str, position: int, message: str) -> ApiError:
    parser = _Parser.__new__(_Parser)
    parser.text = text
    return parser.error("MALFORMED_QUERY", message, position)


def parse(text: str, *, now: int) -> SoqlQuery:
    """Parse a SOQL query; raises ApiError with Salesforce's code and message when it is wrong."""
    if not text.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(text, now=now).parse()
