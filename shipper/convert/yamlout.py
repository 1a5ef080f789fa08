"""The converted config being built, and its YAML: a comment above each construct naming where
in the Collector config it came from."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

Key = tuple[str | int, ...]


class Out:
    """Shipper config values keyed by dotted path, each with the Collector paths it came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.comments: dict[Key, list[str]] = {}
        self.header: list[str] = []

    def set(self, key: str, value: object, origin: str) -> None:
        parts = key.split(".")
        node = self.data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        self.comment(tuple(parts), origin)

    def get(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def comment(self, key: Key, text: str) -> None:
        lines = self.comments.setdefault(key, [])
        if text and text not in lines:
            lines.append(text)


def _scalar(value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _flat(value: object) -> bool:
    """Written on one line: scalars, lists of scalars, empty mappings."""
    if isinstance(value, list):
        return all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict) or not value


def _comment_lines(text: str, indent: str) -> list[str]:
    width = max(40, 99 - len(indent))
    lines = []
    for line in text.replace("\r", "").split("\n"):
        lead = line[:len(line) - len(line.lstrip())]
        wrapped = textwrap.wrap(line, width, subsequent_indent=lead + "  ",
                                break_long_words=False, break_on_hyphens=False) or [""]
        lines += [f"{indent}# {part}".rstrip() for part in wrapped]
    return lines


def _emit(value: Any, key: Key, comments: dict[Key, list[str]], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for name, child in value.items():
            for text in comments.get((*key, name), []):
                lines += _comment_lines(text, pad)
            if _flat(child):
                lines.append(f"{pad}{_scalar(name)}: {_scalar(child)}")
            else:
                lines.append(f"{pad}{_scalar(name)}:")
                lines += _emit(child, (*key, name), comments, indent + 2)
    else:
        for i, item in enumerate(value):
            for text in comments.get((*key, i), []):
                lines += _comment_lines(text, pad)
            if _flat(item):
                lines.append(f"{pad}- {_scalar(item)}")
                continue
            body = _emit(item, (*key, i), comments, indent + 2)
            first = next(j for j, line in enumerate(body) if not line.lstrip().startswith("#"))
            lines += [*body[:first], f"{pad}- {body[first][indent + 2:]}", *body[first + 1:]]
    return lines


def render(out: Out, order: tuple[str, ...] = ()) -> str:
    """The YAML, top-level sections in `order` first."""
    lines = [line for text in out.header for line in _comment_lines(text, "")]
    names = sorted(out.data, key=lambda n: order.index(n) if n in order else len(order))
    for name in names:
        value = out.data[name]
        if lines:
            lines.append("")
        lines += _emit({name: value}, (), out.comments, 0)
    return "\n".join(lines) + "\n"
