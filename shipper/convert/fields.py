"""Collector field references (body, attributes.x, resource["k8s.pod.name"]) and what each one
is in shipper's terms at a point of the operator chain: the line, a field, a Kubernetes source
shipper knows natively, or a part of the runtime's envelope that shipper parses itself."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from shipper.convert.report import Unsupported

# Resource attributes the Collector's Kubernetes components set, as shipper's label sources.
SOURCES = {
    "k8s.namespace.name": "namespace", "k8s.pod.name": "pod", "k8s.pod.uid": "pod_uid",
    "k8s.container.name": "container", "k8s.node.name": "node", "log.iostream": "stream",
    "k8s.deployment.name": "workload", "k8s.statefulset.name": "workload",
    "k8s.daemonset.name": "workload", "k8s.job.name": "workload", "k8s.cronjob.name": "workload",
    "service.name": "app", "app.kubernetes.io/name": "app",
}
# The attribute names of the classic file-path regex (opentelemetry.io's Kubernetes example,
# the seed's resource processor): what processors' from_attribute and label hints refer to.
PATH_ATTRIBUTES = {"namespace": "namespace", "pod_name": "pod", "uid": "pod_uid",
                   "container_name": "container", "stream": "stream"}
FILE_ATTRIBUTES = ("log.file.path", "log.file.name", "log.file.path_resolved",
                   "log.file.name_resolved")

Root = Literal["body", "attributes", "resource"]
Kind = Literal["line", "raw", "body", "field", "source", "time", "native", "file"]


@dataclass(frozen=True, slots=True)
class Ref:
    """What a Collector field is in shipper's terms."""

    kind: Kind  # raw: the runtime's line before its envelope is parsed; body: a parsed map;
    # time: the runtime's timestamp; native: envelope detail (CRI tag, restart count);
    # file: the log file's path or name
    name: str = ""  # the field name (dotted path) or the source


@dataclass(frozen=True, slots=True)
class FieldPath:
    root: Root
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return self.root + "".join(f"[{k!r}]" if "." in k else f".{k}" for k in self.keys)


_SEGMENT = re.compile(r"""\.([^.\[\]"']+)|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*'([^']*)'\s*\]""")


def parse_path(text: str, where: str) -> FieldPath:
    """body.a.b, attributes["k8s.x"], resource.y, $body, $.x, or a bare a.b (body.a.b)."""
    raw = text.strip()
    if raw.startswith("$"):  # the old syntax: $ and $record are the body
        raw = raw[1:]
        for old, new in (("record", "body"), ("labels", "attributes")):
            if raw.startswith(old):
                raw = new + raw[len(old):]
        raw = raw if raw[:1].isalpha() else "body" + raw
    head = re.match(r"[A-Za-z_][\w-]*", raw)
    if head is None:
        raise Unsupported(where, f"not a field: {text!r}")
    name, rest = head.group(), raw[head.end():]
    root: Root
    if name in ("body", "attributes", "resource"):
        root = name  # type: ignore[assignment]  # narrowed by the membership test
    else:
        root, rest = "body", "." + raw
    keys: list[str] = []
    while rest:
        m = _SEGMENT.match(rest)
        if m is None:
            raise Unsupported(where, f"not a field: {text!r}")
        keys.append(m.group(1) or m.group(2) or m.group(3) or "")
        rest = rest[m.end():]
    return FieldPath(root, tuple(keys))


@dataclass(slots=True)
class Scope:
    """The state of an entry at one point of the operator chain."""

    kubelet: bool  # the receiver reads kubelet's container logs
    raw: bool  # the body still holds the runtime's line (no envelope parsed yet)
    body_map: bool = False  # a parser wrote its result to the body (parse_to: body)
    aliases: dict[FieldPath, Ref] = field(default_factory=dict)

    def resolve(self, path: FieldPath) -> Ref:
        if path in self.aliases:
            return self.aliases[path]
        name = ".".join(path.keys)
        if path.root == "body":
            if not path.keys:
                return Ref("raw") if self.raw else Ref("body" if self.body_map else "line")
            return Ref("field", name)
        if name in FILE_ATTRIBUTES:
            return Ref("file", name)
        if name in SOURCES and (path.root == "resource" or name == "log.iostream"):
            return Ref("source", SOURCES[name])
        return Ref("field", name)

    def ref(self, text: str, where: str) -> Ref:
        return self.resolve(parse_path(text, where))


def source_of(name: str) -> str | None:
    """The shipper source a resource attribute or classic attribute name stands for."""
    return SOURCES.get(name) or PATH_ATTRIBUTES.get(name)
