"""The part of Go's text/template that CoreDNS's template plugin is used with, and nothing more.

A template is text with actions in `{{ }}` (trim markers `{{- ` and ` -}}`, comments `{{/* */}}`).
An action is one of:
- a field of the template's data: `.Name`, `.Zone`, `.Class`, `.Type`, `.Remote`, `.Regex`,
  `.Match`, `.Group`, `.Group.NAME` (a missing group prints `<no value>`, as Go does);
- `index .Match N` (out of range: an execution error) and `index .Group "NAME"` (missing: "");
- `parseInt S BASE BITS` (Go's strconv.ParseUint, printed in decimal), S being a field, a
  parenthesised `index`, or a string literal, BASE 2 to 36 and BITS 0 to 64 written as numbers;
- a string or decimal number literal.
Everything else Go has (pipelines, variables, if/range/with/define..., other functions, `.Message`,
`.Question`, `.Var`, `.Meta`) is refused when the template is parsed, with one line saying what, as
is any action Go would only fail on when it runs (an unknown field, `parseInt` with the wrong
arguments): CoreDNS answers SERVFAIL to every question such a template matches.

Execution errors (an index out of range, a number ParseUint refuses) raise `RenderError` with Go's
text.  Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Union

STRING_FIELDS = ("Name", "Zone", "Class", "Type", "Remote", "Regex")
FIELDS = STRING_FIELDS + ("Match", "Group")
UNSUPPORTED_FIELDS = ("Message", "Question", "Var", "Meta")
FUNCTIONS = ("index", "parseInt")
GO_FUNCTIONS = ("and", "call", "html", "js", "len", "not", "or", "print", "printf", "println", "slice", "urlquery",
                "eq", "ne", "lt", "le", "gt", "ge")
KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true",
            "false")
NO_VALUE = "<no value>"  # what Go prints for a missing map entry
_SPACE = " \t\r\n"
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[-+]?[0-9][0-9A-Za-z_.]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<other>.)""", re.VERBOSE | re.DOTALL)


class TemplateError(ValueError):
    """A template this server refuses at start: Go's parse error, or a construct it does not support."""


class RenderError(ValueError):
    """A template that failed to execute for one question (CoreDNS: SERVFAIL, the error logged)."""


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]  # ("Group", "a")

    def __str__(self) -> str:
        return "." + ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Literal:
    value: Union[str, int]
    text: str  # as written

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Node, ...]
    parenthesised: bool = False

    def __str__(self) -> str:
        text = " ".join([self.function, *map(str, self.args)])
        return f"({text})" if self.parenthesised else text


Node = Union[Field, Literal, Call]


@dataclass(frozen=True, slots=True)
class Action:
    node: Node
    line: int
    column: int  # Go's: the byte offset of the command in its line


Part = Union[str, Action]
Data = Mapping[str, object]  # field -> str, list[str] (Match) or dict[str, str] (Group)


@dataclass(frozen=True, slots=True)
class GoTemplate:
    """A parsed template: literal text and actions, in order."""

    name: str  # Go's template name: the section ("answer", "additional", "authority")
    source: str
    parts: tuple[Part, ...]

    @property
    def fields(self) -> frozenset[str]:
        """The data fields the template reads (`Remote`: the answer depends on the client)."""
        found: set[str] = set()
        for part in self.parts:
            if isinstance(part, Action):
                _collect(part.node, found)
        return frozenset(found)

    @property
    def printed(self) -> str:
        """The template as Go prints its parse tree (`Tree.Root.String()`: actions without spaces or
        trim markers, comments left out), which CoreDNS's failure counters take as a label."""
        return "".join(part if isinstance(part, str) else "{{" + str(part.node) + "}}" for part in self.parts)

    def render(self, data: Data) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(_text(_value(part.node, data)))
                except _Failure as failure:
                    raise RenderError(f'template: {self.name}:{part.line}:{part.column}: executing "{self.name}" at '
                                      f"<{failure.node}>: {failure}") from None
        return "".join(out)


def parse(name: str, text: str) -> GoTemplate:
    """Parse `text` as Go's text/template does, refusing what this server does not support."""
    parts: list[Part] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        literal = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            literal = literal.lstrip(_SPACE)
        if start < 0:
            parts.append(literal)
            break
        line = text.count("\n", 0, start) + 1
        inner = start + 2
        if text[inner:inner + 1] == "-" and text[inner + 1:inner + 2] in tuple(_SPACE):
            literal = literal.rstrip(_SPACE)
            inner += 2
        parts.append(literal)
        end = _close(text, inner, name, line)
        body = text[inner:end]
        trim_next = len(body) >= 2 and body[-1] == "-" and body[-2] in _SPACE
        if trim_next:
            body = body[:-2]
        pos = end + 2
        stripped = body.strip(_SPACE)
        if stripped.startswith("/*"):
            if not stripped.endswith("*/") or len(stripped) < 4:
                raise TemplateError(f"template: {name}:{line}: unclosed comment")
            continue
        column = inner - (text.rfind("\n", 0, inner) + 1) + (len(body) - len(body.lstrip(_SPACE)))
        parts.append(Action(_action(body, name, line), line, column))
    return GoTemplate(name, text, tuple(part for part in parts if part != ""))


def _close(text: str, at: int, name: str, line: int) -> int:
    """Where the action starting at `at` ends (its `}}`), skipping quoted strings."""
    i = at
    while i < len(text):
        c = text[i]
        if text.startswith("}}", i):
            return i
        if c in "\"`":
            end = text.find(c, i + 1)
            while c == '"' and end > 0 and _escaped(text, end):
                end = text.find(c, end + 1)
            if end < 0:
                raise TemplateError(f"template: {name}:{line}: unterminated quoted string")
            i = end
        i += 1
    raise TemplateError(f"template: {name}:{line}: unclosed action")


def _escaped(text: str, at: int) -> bool:
    backslashes = len(text[:at]) - len(text[:at].rstrip("\\"))
    return backslashes % 2 == 1


def _action(body: str, name: str, line: int) -> Node:
    tokens = []
    for match in _TOKEN.finditer(body):
        kind = match.lastgroup
        if kind != "space":
            tokens.append((str(kind), match.group()))
    node, rest = _command(tokens, name, line, nested=False)
    if rest:
        raise TemplateError(f"template: {name}:{line}: unexpected {rest[0][1]!r} in operand")
    return node


def _command(tokens: list[tuple[str, str]], name: str, line: int, nested: bool) -> tuple[Node, list[tuple[str, str]]]:
    """One command (operands up to the end of the action, or the `)` closing a parenthesised one)."""
    where = f"template: {name}:{line}:"
    operands: list[Node | str] = []  # a str: a function's name
    while tokens:
        kind, text = tokens[0]
        if kind == "close":
            if not nested:
                raise TemplateError(f"{where} unexpected right paren")
            break
        tokens = tokens[1:]
        if kind == "open":
            inner, tokens = _command(tokens, name, line, nested=True)
            if not tokens:
                raise TemplateError(f"{where} unclosed left paren")
            tokens = tokens[1:]
            if tokens and tokens[0][0] == "field":
                raise TemplateError(f"{where} a field of a parenthesised value ({tokens[0][1]}) is not supported "
                                    "by this server")
            if not isinstance(inner, Call):
                raise TemplateError(f"{where} parentheses around {inner} are not supported by this server")
            operands.append(Call(inner.function, inner.args, parenthesised=True))
        elif kind == "field":
            operands.append(_field(text, where))
        elif kind == "string":
            try:
                operands.append(Literal(json.loads(text), text))
            except ValueError:
                raise TemplateError(f"{where} the escapes of {text} are not supported by this server") from None
        elif kind == "raw":
            operands.append(Literal(text[1:-1], text))
        elif kind == "number":
            if not re.fullmatch(r"-?[0-9]+", text) or (len(text.lstrip("-")) > 1 and text.lstrip("-")[0] == "0"):
                raise TemplateError(f"{where} the number {text} is not supported by this server (decimal integers "
                                    "only)")
            operands.append(Literal(int(text), text))
        elif kind == "ident":
            if text in KEYWORDS:
                raise TemplateError(f"{where} '{text}' is not supported by this server (fields, index and parseInt "
                                    "only)")
            if text in GO_FUNCTIONS:
                raise TemplateError(f"{where} the function {text} is not supported by this server (index and "
                                    "parseInt only)")
            if text not in FUNCTIONS:
                raise TemplateError(f'{where} function "{text}" not defined')
            if operands:
                raise TemplateError(f"{where} {text} as an argument is not supported by this server: write "
                                    f"({text} ...)")
            operands.append(text)
        elif text == ".":
            raise TemplateError(f"{where} the whole data ({{{{ . }}}}) is not supported by this server")
        elif text == "|":
            raise TemplateError(f"{where} pipelines ('|') are not supported by this server")
        elif text == "$":
            raise TemplateError(f"{where} variables ('$') are not supported by this server")
        else:
            raise TemplateError(f"{where} unexpected {text!r} in command")
    if not operands:
        raise TemplateError(f"{where} missing value for command")
    first = operands[0]
    if isinstance(first, str):
        args = tuple(arg for arg in operands[1:] if not isinstance(arg, str))
        return _call(first, args, where), tokens
    if len(operands) > 1:
        raise TemplateError(f"{where} arguments after {first} are not supported by this server")
    return first, tokens


def _field(text: str, where: str) -> Field:
    path = tuple(text[1:].split("."))
    root = path[0]
    if root in UNSUPPORTED_FIELDS:
        raise TemplateError(f"{where} .{root} is not supported by this server")
    if root not in FIELDS:
        raise TemplateError(f"{where} can't evaluate field {root} (CoreDNS would answer SERVFAIL whenever it is used)")
    if len(path) > (2 if root == "Group" else 1):
        raise TemplateError(f"{where} can't evaluate field {path[-1]} of .{'.'.join(path[:-1])}")
    return Field(path)


def _call(function: str, args: tuple[Node, ...], where: str) -> Call:
    call = Call(function, args)
    if function == "index":
        if len(args) == 2 and args[0] == Field(("Match",)) and isinstance(args[1], Literal) \
                and isinstance(args[1].value, int) and args[1].value >= 0:
            return call
        if len(args) == 2 and args[0] == Field(("Group",)) and isinstance(args[1], Literal) \
                and isinstance(args[1].value, str):
            return call
        raise TemplateError(f"{where} {call} is not supported by this server (index .Match N or index .Group "
                            '"NAME" only)')
    if len(args) != 3:
        raise TemplateError(f"{where} wrong number of args for parseInt: want 3 got {len(args)}")
    value, base, bits = args
    if not ((isinstance(value, Call) and value.function == "index")
            or (isinstance(value, Literal) and isinstance(value.value, str))
            or (isinstance(value, Field) and (value.path[0] in STRING_FIELDS or len(value.path) == 2))):
        raise TemplateError(f"{where} {call}: the first argument of parseInt must be a string")
    if not (isinstance(base, Literal) and isinstance(base.value, int) and 2 <= base.value <= 36):
        raise TemplateError(f"{where} {call}: the base of parseInt must be a number from 2 to 36 here")
    if not (isinstance(bits, Literal) and isinstance(bits.value, int) and 0 <= bits.value <= 64):
        raise TemplateError(f"{where} {call}: the bit size of parseInt must be a number from 0 to 64")
    return call


def _collect(node: Node, found: set[str]) -> None:
    if isinstance(node, Field):
        found.add(node.path[0])
    elif isinstance(node, Call):
        for arg in node.args:
            _collect(arg, found)


class _Failure(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


_MISSING = object()  # a map entry that is not there (Go's invalid reflect.Value)


def _value(node: Node, data: Data) -> object:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Field):
        value = data[node.path[0]]
        if len(node.path) == 2:
            assert isinstance(value, dict)
            return value.get(node.path[1], _MISSING)
        return value
    if node.function == "index":
        collection = _value(node.args[0], data)
        key = node.args[1]
        assert isinstance(key, Literal)
        if isinstance(collection, dict):
            return collection.get(key.value, "")
        assert isinstance(collection, list) and isinstance(key.value, int)
        if key.value >= len(collection):
            raise _Failure(node, f"error calling index: index out of range: {key.value}")
        return collection[key.value]
    text = _value(node.args[0], data)
    if text is _MISSING:
        raise _Failure(node.args[0], "invalid value; expected string")
    base, bits = node.args[1], node.args[2]
    assert isinstance(text, str) and isinstance(base, Literal) and isinstance(bits, Literal)
    assert isinstance(base.value, int) and isinstance(bits.value, int)
    try:
        return parse_uint(text, base.value, bits.value)
    except ValueError as error:
        raise _Failure(node, f"error calling parseInt: {error}") from None


def _text(value: object) -> str:
    """A value as Go's fmt prints it in a template."""
    if value is _MISSING:
        return NO_VALUE
    if isinstance(value, list):
        return "[" + " ".join(value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{value[key]}" for key in sorted(value)) + "]"
    return str(value)


def parse_uint(text: str, base: int, bits: int) -> int:
    """Go's strconv.ParseUint for a base from 2 to 36; ValueError with Go's text."""
    limit = (1 << (bits or 64)) - 1
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not text:
        raise ValueError(f"strconv.ParseUint: parsing {quoted}: invalid syntax")
    value = 0
    for char in text:
        digit = int(char, 36) if char.isascii() and char.isalnum() else base
        if digit >= base:
            raise ValueError(f"strconv.ParseUint: parsing {quoted}: invalid syntax")
        value = value * base + digit
        if value > limit:
            raise ValueError(f"strconv.ParseUint: parsing {quoted}: value out of range")
    return value
