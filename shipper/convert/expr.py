"""The condition languages of Collector configs, parsed: the stanza operators' `expr`
(antonmedv/expr: `body matches "^\\{"`, `attributes.x == "y"`, and/or/not) and OTTL conditions
(`IsMatch(body, "x")`, `severity_number < SEVERITY_NUMBER_WARN`,
`resource.attributes["k8s.namespace.name"] == "x"`). Only the common forms; anything else is a
ParseError, reported by the caller as unmapped."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

Scalar = str | int | float | bool | None


class ParseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Path:
    text: str  # a field reference, normalised: body.x, attributes["x"], resource["x"]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Lit:
    value: Scalar

    def __str__(self) -> str:
        return "nil" if self.value is None else json.dumps(self.value)


@dataclass(frozen=True, slots=True)
class Name:
    name: str  # an OTTL enum (SEVERITY_NUMBER_WARN) or a special path (severity_number)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.args))})"


@dataclass(frozen=True, slots=True)
class Compare:
    left: Node
    op: str  # == != < <= > >= matches contains startsWith endsWith
    right: Node

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and, or
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return f" {self.op} ".join(f"({i})" if isinstance(i, BoolOp) else str(i)
                                   for i in self.items)


@dataclass(frozen=True, slots=True)
class Not:
    item: Node

    def __str__(self) -> str:
        return f"not ({self.item})"


Node = Path | Lit | Name | Call | Compare | BoolOp | Not

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,])
  | (?P<id>\$?[A-Za-z_][\w]*|\$)
)""", re.X)
_SPECIAL = ("severity_number", "severity_text", "timestamp", "time", "observed_timestamp")
_WORD_OPS = {"and": "and", "or": "or", "not": "not", "matches": "matches",
             "contains": "contains", "startsWith": "startsWith", "endsWith": "endsWith"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "/": "/"}


def _unquote(token: str) -> str:
    if token[0] == "`":
        return token[1:-1]
    body = token[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ParseError(f"unexpected {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "id" and value[1:] in _WORD_OPS and value.startswith("$"):
            tokens.append(("id", "$"))  # `$matches "x"`: the old body variable, then the op
            value = value[1:]
        tokens.append((kind, value))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise ParseError("unexpected end of the expression")
        self.i += 1
        return token

    def word(self) -> str:
        kind, value = self.peek()
        if kind == "op":
            return {"&&": "and", "||": "or", "!": "not"}.get(value, value)
        return _WORD_OPS.get(value, "") if kind == "id" else ""

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise ParseError(f"expected {value!r}")

    def boolean(self, op: str = "or") -> Node:
        inner = "and" if op == "or" else ""
        items = [self.boolean(inner) if inner else self.negation()]
        while self.word() == op:
            self.take()
            items.append(self.boolean(inner) if inner else self.negation())
        return items[0] if len(items) == 1 else BoolOp(op, tuple(items))

    def negation(self) -> Node:
        if self.word() == "not":
            self.take()
            return Not(self.negation())
        left = self.operand()
        kind, value = self.peek()
        op = value if kind == "op" and value in ("==", "!=", "<", "<=", ">", ">=") else (
            self.word() if self.word() in ("matches", "contains", "startsWith", "endsWith")
            else "")
        if not op:
            return left
        self.take()
        return Compare(left, op, self.operand())

    def operand(self) -> Node:
        kind, value = self.take()
        if kind == "str":
            return Lit(_unquote(value))
        if kind == "num":
            return Lit(float(value) if "." in value else int(value))
        if value == "(":
            inner = self.boolean()
            self.expect(")")
            return inner
        if kind != "id":
            raise ParseError(f"unexpected {value!r}")
        if value in ("true", "false"):
            return Lit(value == "true")
        if value in ("nil", "null"):
            return Lit(None)
        if self.peek()[1] == "(":
            self.take()
            args: list[Node] = []
            while self.peek()[1] != ")":
                args.append(self.boolean())
                if self.peek()[1] == ",":
                    self.take()
            self.take()
            return Call(value, tuple(args))
        return self.path(value)

    def path(self, head: str) -> Node:
        parts = [head]
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                kind, key = self.take()
                if kind != "id":
                    raise ParseError(f"unexpected {key!r} after '.'")
                parts.append("." + key)
            else:
                kind, key = self.take()
                if kind != "str":
                    raise ParseError("only quoted keys are supported in [...]")
                self.expect("]")
                parts.append(f'["{_unquote(key)}"]')
        text = "".join(parts)
        if text.startswith("log."):  # OTTL's newer context-qualified paths: log.body
            text = text[4:]
        if text.startswith(("resource.attributes.", 'resource.attributes["')):
            text = "resource" + text[len("resource.attributes"):]
        if text in _SPECIAL or (head.isupper() and len(parts) == 1):
            return Name(text)
        return Path(text)


def parse(text: str) -> Node:
    parser = _Parser(text)
    node = parser.boolean()
    if parser.peek()[0] != "end":
        raise ParseError(f"unexpected {parser.peek()[1]!r}")
    return node
