"""Label and field selectors: parsing, matching and printing, as the Kubernetes API does them.

Label selectors follow apimachinery's `labels.Parse` (the lexer, the recursive-descent
parser, key and value validation, the sorted canonical `String()`), `metav1.LabelSelector`
conversion (`LabelSelectorAsSelector`) and `FormatLabelSelector`. Field selectors follow
`fields.ParseSelector` (comma-separated `=`, `==`, `!=` terms with backslash escapes).

A bad `labelSelector` or `fieldSelector` query parameter is a 400 BadRequest whose message
is the parser's error text, exactly as kube-apiserver decodes list options. Which fields a
kind accepts, and the values they take on an object, live in `fieldsets.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pocketkube.core.errors import FieldError, bad_request, go_quote

# ---------------------------------------------------------------------------------------
# Label key and value validation (apimachinery util/validation, 1.32 wording)
# ---------------------------------------------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(_QNAME_FMT)
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', "
              "and must start and end with an alphanumeric character")
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")
LABEL_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253


def _byte_length(text: str) -> int:
    """Go's len(): lengths are counted in UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """validation.RegexError: the message, examples and the regex, in Go's exact shape."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    listed = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {listed}regex used for validation is '{fmt}')"


def _max_length_error(length: int) -> str:
    return f"must be no more than {length} characters"


def dns1123_subdomain_errors(value: str) -> list[str]:
    """validation.IsDNS1123Subdomain: the reasons `value` is not a DNS subdomain."""
    errors = []
    if _byte_length(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(_max_length_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: the reasons `value` is not a valid label key."""
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend("prefix part " + error for error in dns1123_subdomain_errors(prefix))
    if not name:
        errors.append("name part must be non-empty")
    elif _byte_length(name) > LABEL_NAME_MAX_LENGTH:
        errors.append("name part " + _max_length_error(LABEL_NAME_MAX_LENGTH))
    if not _QNAME_RE.fullmatch(name):
        errors.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue: the reasons `value` is not a valid label value."""
    errors = []
    if _byte_length(value) > LABEL_VALUE_MAX_LENGTH:
        errors.append(_max_length_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


# ---------------------------------------------------------------------------------------
# Requirements and selectors
# ---------------------------------------------------------------------------------------

# selection.Operator values.
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN = "in", "notin"
EXISTS, DOES_NOT_EXIST = "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_INT64_RANGE = range(-(2**63), 2**63)
_GO_DECIMAL = re.compile(r"[+-]?[0-9]+")


class RequirementError(ValueError):
    """NewRequirement rejected a key, an operator or values; str() is apimachinery's text."""


def _go_parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None where Go returns an error."""
    if not _GO_DECIMAL.fullmatch(text):
        return None
    number = int(text)
    return number if number in _INT64_RANGE else None


def _json_strings(values: tuple[str, ...] | None) -> str:
    """json.Marshal of a Go []string: null for nil, ["a","b"] otherwise (HTML-safe, as Go)."""
    if values is None:
        return "null"
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _aggregate(messages: list[str]) -> str:
    """field.ErrorList.ToAggregate().Error(): one message bare, several in [a, b]."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _invalid(path: str, value: str, detail: str) -> str:
    return str(FieldError("Invalid", path, value, detail))


@dataclass(frozen=True)
class Requirement:
    """One `key <operator> values` term of a label selector (labels.Requirement)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: tuple[str, ...] | None = None) -> Requirement:
        """labels.NewRequirement: validate and build, or raise RequirementError.

        `values=None` stands for a Go nil slice (it only changes how an error prints).
        """
        errors: list[str] = []
        key_errors = qualified_name_errors(key)
        if key_errors:
            errors.append(_invalid("key", key, "; ".join(key_errors)))
        given = values or ()
        if operator in (IN, NOT_IN):
            if not given:
                errors.append(f"values: Invalid value: {_json_strings(values)}: "
                              "for 'in', 'notin' operators, values set can't be empty")
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(given) != 1:
                errors.append(f"values: Invalid value: {_json_strings(values)}: "
                              "exact-match compatibility requires one single value")
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if given:
                errors.append(f"values: Invalid value: {_json_strings(values)}: "
                              "values set must be empty for exists and does not exist")
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(given) != 1:
                errors.append(f"values: Invalid value: {_json_strings(values)}: "
                              "for 'Gt', 'Lt' operators, exactly one value is required")
            for index, value in enumerate(given):
                if _go_parse_int64(value) is None:
                    errors.append(_invalid(f"values[{index}]", value,
                                           "for 'Gt', 'Lt' operators, the value must be an integer"))
        else:
            supported = ", ".join(go_quote(op) for op in _BINARY_OPERATORS + (EXISTS, DOES_NOT_EXIST))
            errors.append(f"operator: Unsupported value: {go_quote(operator)}: supported values: {supported}")
        for index, value in enumerate(given):
            value_errors = label_value_errors(value)
            if value_errors:
                errors.append(_invalid(f"values[{index}][{key}]", value, "; ".join(value_errors)))
        if errors:
            raise RequirementError(_aggregate(errors))
        return cls(key, operator, tuple(given))

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if self.operator in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if self.operator == EXISTS:
            return present
        if self.operator == DOES_NOT_EXIST:
            return not present
        if self.operator in (GREATER_THAN, LESS_THAN) and present and len(self.values) == 1:
            have, want = _go_parse_int64(labels[self.key]), _go_parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if self.operator == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True)
class LabelSelector:
    """An AND of requirements, sorted by key; `nothing` is labels.Nothing()."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (it matches every object)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have (from =, == or a one-value in), else None."""
        for requirement in self.requirements:
            if requirement.key == key:
                exact = requirement.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(requirement.values) == 1
                return requirement.values[0] if exact else None
        return None

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _sorted_by_key(requirements: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(requirements, key=lambda requirement: requirement.key))


# ---------------------------------------------------------------------------------------
# labels.Parse
# ---------------------------------------------------------------------------------------

_END, _CLOSE_PAREN, _COMMA, _NOT, _DOUBLE_EQUALS, _EQUALS = "end", ")", ",", "!", "==", "="
_GREATER, _IDENTIFIER, _IN, _LESS, _NOT_EQUALS, _NOT_IN, _OPEN_PAREN = ">", "id", "in", "<", "!=", "notin", "("
_LITERAL_TOKENS = {")": _CLOSE_PAREN, ",": _COMMA, "!": _NOT, "==": _DOUBLE_EQUALS, "=": _EQUALS,
                   ">": _GREATER, "in": _IN, "<": _LESS, "!=": _NOT_EQUALS, "notin": _NOT_IN, "(": _OPEN_PAREN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_NUL = "\0"  # what the Go lexer reads past the end; a NUL in the input reads the same


class _Lexer:
    """The label selector lexer. A NUL character ends the input, as it does in Go."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def _read(self) -> str:
        if self.pos < len(self.text):
            self.pos += 1
            return self.text[self.pos - 1]
        return _NUL

    def _scan_word(self) -> tuple[str, str]:
        buffer = []
        while True:
            ch = self._read()
            if ch == _NUL:
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self.pos -= 1
                break
            buffer.append(ch)
        word = "".join(buffer)
        return _LITERAL_TOKENS.get(word, _IDENTIFIER), word

    def _scan_symbol(self) -> tuple[str, str]:
        buffer = ""
        last: tuple[str, str] | None = None
        while True:
            ch = self._read()
            if ch == _NUL:
                break
            if ch not in _SPECIAL:
                self.pos -= 1
                break
            buffer += ch
            if buffer in _LITERAL_TOKENS:
                last = (_LITERAL_TOKENS[buffer], buffer)
            elif last is not None:
                self.pos -= 1
                break
        # Every special character is a token on its own, so `last` is always set here.
        assert last is not None
        return last

    def tokens(self) -> list[tuple[str, str]]:
        scanned = []
        while True:
            ch = self._read()
            while ch in _WHITESPACE:
                ch = self._read()
            if ch == _NUL:
                scanned.append((_END, ""))
                return scanned
            self.pos -= 1
            scanned.append(self._scan_symbol() if ch in _SPECIAL else self._scan_word())


class _ParseError(Exception):
    pass


class _Parser:
    """labels.Parser: a recursive-descent parser over the scanned tokens."""

    def __init__(self, text: str):
        self.items = _Lexer(text).tokens()
        self.position = 0

    def _lookahead(self, values_context: bool = True) -> tuple[str, str]:
        return self._as_context(self.items[self.position], values_context)

    def _consume(self, values_context: bool = True) -> tuple[str, str]:
        self.position += 1
        return self._as_context(self.items[self.position - 1], values_context)

    @staticmethod
    def _as_context(item: tuple[str, str], values_context: bool) -> tuple[str, str]:
        token, literal = item
        if values_context and token in (_IN, _NOT_IN):
            return _IDENTIFIER, literal
        return token, literal

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._lookahead()
            if token == _END:
                return requirements
            if token not in (_IDENTIFIER, _NOT):
                raise _ParseError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except (_ParseError, RequirementError) as error:
                raise _ParseError(f"unable to parse requirement: {error}") from None
            token, literal = self._consume()
            if token == _END:
                return requirements
            if token != _COMMA:
                raise _ParseError(f"found '{literal}', expected: ',' or 'end of string'")
            token, literal = self._lookahead()
            if token not in (_IDENTIFIER, _NOT):
                raise _ParseError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return Requirement.new(key, operator, ())
        operator = self._operator()
        values = self._value_set() if operator in (IN, NOT_IN) else self._exact_value()
        return Requirement.new(key, operator, tuple(sorted(values)))

    def _key_and_inferred_operator(self) -> tuple[str, str]:
        operator = ""
        token, literal = self._consume()
        if token == _NOT:
            operator = DOES_NOT_EXIST
            token, literal = self._consume()
        if token != _IDENTIFIER:
            raise _ParseError(f"found '{literal}', expected: identifier")
        key_errors = qualified_name_errors(literal)
        if key_errors:
            raise _ParseError(_invalid("<nil>", literal, "; ".join(key_errors)))
        if self._lookahead()[0] in (_END, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def _operator(self) -> str:
        token, literal = self._consume(values_context=False)
        operators = {_IN: IN, _EQUALS: EQUALS, _DOUBLE_EQUALS: DOUBLE_EQUALS, _GREATER: GREATER_THAN,
                     _LESS: LESS_THAN, _NOT_IN: NOT_IN, _NOT_EQUALS: NOT_EQUALS}
        if token not in operators:
            raise _ParseError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        return operators[token]

    def _value_set(self) -> set[str]:
        token, literal = self._consume()
        if token != _OPEN_PAREN:
            raise _ParseError(f"found '{literal}' expected: '('")
        token, literal = self._lookahead()
        if token in (_IDENTIFIER, _COMMA):
            values = self._identifier_list()
            if self._consume()[0] != _CLOSE_PAREN:
                raise _ParseError(f"found '{literal}', expected: ')'")
            return values
        if token == _CLOSE_PAREN:
            self._consume()
            return {""}
        raise _ParseError(f"found '{literal}', expected: ',', ')' or identifier")

    def _identifier_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            token, literal = self._consume()
            if token == _IDENTIFIER:
                values.add(literal)
                next_token, next_literal = self._lookahead()
                if next_token == _CLOSE_PAREN:
                    return values
                if next_token != _COMMA:
                    raise _ParseError(f"found '{next_literal}', expected: ',' or ')'")
            elif token == _COMMA:
                if not values:
                    values.add("")  # "(,"
                next_token = self._lookahead()[0]
                if next_token == _CLOSE_PAREN:
                    values.add("")  # ",)"
                    return values
                if next_token == _COMMA:
                    self._consume()
                    values.add("")  # ",,"
            else:
                raise _ParseError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._lookahead()[0] in (_END, _COMMA):
            return {""}
        token, literal = self._consume()
        if token == _IDENTIFIER:
            return {literal}
        raise _ParseError(f"found '{literal}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """labels.Parse: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`, `k>1`, `k<1`.

    Requirements are joined by commas (AND) and sorted by key. Raises APIError 400
    BadRequest carrying the parser's message, as kube-apiserver answers a bad labelSelector.
    """
    try:
        requirements = _Parser(text).parse()
    except _ParseError as error:
        raise bad_request(str(error)) from None
    return LabelSelector(_sorted_by_key(requirements))


# ---------------------------------------------------------------------------------------
# metav1.LabelSelector
# ---------------------------------------------------------------------------------------

_EXPRESSION_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_object(selector: dict | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector for a `{matchLabels, matchExpressions}` dict.

    A nil (None) selector matches nothing; an empty one ({} or both parts empty) matches
    everything. Raises ValueError with apimachinery's message for a bad operator, key or value.
    """
    if selector is None:
        return LabelSelector(nothing=True)
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return LabelSelector()
    requirements = [Requirement.new(key, EQUALS, (value,)) for key, value in match_labels.items()]
    for expression in expressions:
        operator = expression.get("operator", "")
        if operator not in _EXPRESSION_OPERATORS:
            raise ValueError(f"{go_quote(operator)} is not a valid label selector operator")
        values = expression.get("values")
        requirements.append(Requirement.new(expression.get("key", ""), _EXPRESSION_OPERATORS[operator],
                                            tuple(values) if values else None))
    return LabelSelector(_sorted_by_key(requirements))


def format_label_selector(selector: dict | None) -> str:
    """metav1.FormatLabelSelector: the selector's string, `<none>` if empty, `<error>` if bad."""
    try:
        text = str(selector_from_object(selector))
    except ValueError:
        return "<error>"
    return text or "<none>"


def selector_from_set(labels: Mapping[str, str] | None) -> str:
    """labels.SelectorFromSet(labels).String(): `a=b,c=d`, sorted by key, unvalidated."""
    return ",".join(f"{key}={value}" for key, value in sorted((labels or {}).items()))


# ---------------------------------------------------------------------------------------
# fields.ParseSelector
# ---------------------------------------------------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")  # "==" before "=" so a value never starts with "="


@dataclass(frozen=True)
class FieldSelector:
    """An AND of `field = value` / `field != value` terms, in the order the parser sorted them."""

    terms: tuple[tuple[str, str, str], ...] = ()

    @property
    def requirements(self) -> list[tuple[str, str, str]]:
        """(field, operator, value) triples; the operator is "=" or "!=" ("==" reads as "=")."""
        return list(self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, fields: Mapping[str, str]) -> bool:
        """A field the object does not have reads as "" (fields.Set.Get)."""
        return all((fields.get(field, "") == value) == (operator == "=")
                   for field, operator, value in self.terms)

    def requires_exact_match(self, field: str) -> str | None:
        """The value an `=` term demands of `field`, else None."""
        for name, operator, value in self.terms:
            if name == field and operator == "=":
                return value
        return None

    def renamed(self, names: Mapping[str, str]) -> FieldSelector:
        """The same selector with fields renamed (a field label conversion's aliases)."""
        return FieldSelector(tuple((names.get(field, field), operator, value)
                                   for field, operator, value in self.terms))

    def __str__(self) -> str:
        return ",".join(f"{field}{operator}{escape_field_value(value)}" for field, operator, value in self.terms)


def escape_field_value(value: str) -> str:
    """fields.EscapeValue: backslash-escape `\\`, `,` and `=`."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    out = []
    escaping = False
    for ch in value:
        if escaping:
            if ch not in "\\,=":
                raise _ParseError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaping = False
        elif ch == "\\":
            escaping = True
        elif ch in ",=":
            raise _ParseError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaping:
        raise _ParseError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_field_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped, keeping the escapes."""
    if not text:
        return []
    terms, start, escaping = [], 0, False
    for index, ch in enumerate(text):
        if escaping:
            escaping = False
        elif ch == "\\":
            escaping = True
        elif ch == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_field_term(term: str) -> tuple[str, str, str] | None:
    for index in range(len(term)):
        for operator in _FIELD_OPERATORS:
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator):]
    return None


def parse_field_selector(text: str) -> FieldSelector:
    """fields.ParseSelector; raises APIError 400 with apimachinery's message when malformed."""
    terms = []
    for part in sorted(_split_field_terms(text)):
        if not part:
            continue
        split = _split_field_term(part)
        if split is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, operator, raw_value = split
        try:
            value = _unescape_field_value(raw_value)
        except _ParseError as error:
            raise bad_request(str(error)) from None
        if field or value:  # Transform drops a term whose field and value are both empty
            terms.append((field, "!=" if operator == "!=" else "=", value))
    return FieldSelector(tuple(terms))


DEFAULT_FIELD_LABELS = frozenset({"metadata.name", "metadata.namespace"})


def unsupported_field_label_message(label: str, supported: Collection[str], resource: str) -> str:
    """The text of a field label conversion's rejection.

    Kinds with no conversion function of their own (supported is just metadata.name and
    metadata.namespace) get runtime.DefaultMetaV1FieldSelectorConversion's wording; batch/v1
    Job names itself; every other registered conversion says `field label not supported: X`.
    """
    if frozenset(supported) == DEFAULT_FIELD_LABELS:
        return (f"{go_quote(label)} is not a known field selector: only "
                f"{go_quote('metadata.name')}, {go_quote('metadata.namespace')}")
    if resource == "Job.batch":
        return f"field label {go_quote(label)} not supported for batchv1.Job"
    return f"field label not supported: {label}"


def check_field_selector_supported(selector: FieldSelector, supported: Collection[str], resource: str) -> None:
    """Raise the apiserver's 400 for the first field `selector` uses that the kind does not accept.

    `supported` holds the labels the kind's field label conversion accepts; `resource` is the
    kind as `Kind` or `Kind.group` (e.g. "Pod", "Job.batch"). Terms are checked in the
    selector's (sorted) order, as fields.Selector.Transform does.
    """
    for field, _operator, _value in selector.terms:
        if field not in supported:
            raise bad_request(unsupported_field_label_message(field, supported, resource))

