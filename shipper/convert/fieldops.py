"""The field operators (move, copy, add, remove, retain, flatten, regex_replace, noop) as
shipper's field stages. A field the Collector names by its Kubernetes meaning
(resource["k8s.pod.name"]) is one of shipper's sources, not a field: renaming it is a matter
of names, removing it a matter of what is shipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipper.convert.context import Ctx
from shipper.convert.fields import Ref, parse_path
from shipper.convert.report import Unsupported
from shipper.convert.source import as_str, as_strs
from shipper.convert.units import go_regex, go_replacement

if TYPE_CHECKING:
    from collections.abc import Callable

    from shipper.convert.conditions import Condition
    from shipper.convert.graph import Op

_UNSHIPPED = ("time", "native", "file")  # parsed natively or never shipped by shipper


def _ref(ctx: Ctx, op: Op, key: str) -> Ref:
    where = f"{op.path}.{key}"
    return ctx.scope.ref(as_str(op.config.get(key), where), where)


def _name(ref: Ref) -> str:
    """A stage's name for the line or a field."""
    return "line" if ref.kind == "line" else ref.name


def move_or_copy(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    src, dst = _ref(ctx, op, "from"), _ref(ctx, op, "to")
    to_path = parse_path(as_str(op.config.get("to"), f"{op.path}.to"), f"{op.path}.to")
    if src.kind == "line" and dst.kind == "line":
        ctx.done_natively(op.label, "the message is the line already")
        return
    if src.kind == "source" and dst.kind in ("field", "source"):
        # Kubernetes metadata under another name: shipper ships it under its own name.
        ctx.scope.aliases[to_path] = src
        ctx.labels.add(ctx.labels.carried, src.name, op.label)
        ctx.done_natively(op.label, f"{src.name}: shipper ships it as {src.name!r}")
        return
    if src.kind in _UNSHIPPED and dst.kind in (*_UNSHIPPED, "field"):
        ctx.scope.aliases[to_path] = src  # what shipper keeps natively, under another name
        ctx.done_natively(op.label, f"a part of the runtime's envelope ({src.kind}): shipper "
                          "keeps it natively")
        return
    if dst.kind == "source":
        raise Unsupported(op.path, f"sets Kubernetes metadata ({dst.name}) from {src.kind} "
                          f"{src.name}: shipper takes it from the pod")
    if {src.kind, dst.kind} - {"line", "field"}:
        raise Unsupported(op.path, f"moves {src.kind} to {dst.kind}: shipper's {op.type} stage "
                          "moves fields and the line")
    if op.type == "move" and dst.kind == "line":
        ctx.scope.body_map = False
    ctx.stage(op.type, {"from": _name(src), "to": _name(dst)}, op.label, when)


def add(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    dst, value = _ref(ctx, op, "field"), op.config.get("value")
    if isinstance(value, str) and value.strip().startswith("EXPR("):
        raise Unsupported(f"{op.path}.value", f"{value}: shipper sets constant values only")
    if dst.kind != "field":
        raise Unsupported(f"{op.path}.field", f"sets {dst.kind} {dst.name}: shipper's set stage "
                          "sets fields")
    fields = _flatten(dst.name, value, f"{op.path}.value")
    ctx.stage("set", {"fields": fields}, op.label, when)


def _flatten(name: str, value: object, where: str) -> dict[str, str]:
    """A value as field values: a mapping becomes dotted names, as shipper's parsers name
    nested keys."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, child in value.items():
            out.update(_flatten(f"{name}.{key}", child, where))
        return out
    if isinstance(value, bool):
        return {name: str(value).lower()}
    if isinstance(value, str | int | float):
        return {name: str(value)}
    raise Unsupported(where, f"{value!r}: shipper's fields hold text")


def remove(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    ref = _ref(ctx, op, "field")
    if ref.kind == "source":
        ctx.labels.add(ctx.labels.removed, ref.name, op.label)
        ctx.done_natively(op.label, f"{ref.name} is not shipped (left out of labels)")
        return
    if ref.kind in _UNSHIPPED:
        ctx.done_natively(op.label, f"{ref.kind} {ref.name}: shipper does not ship it anyway")
        return
    if ref.kind != "field" or not ref.name:
        raise Unsupported(op.path, f"removes {ref.name or ref.kind}: shipper's remove stage "
                          "removes named fields")
    ctx.stage("remove", {"fields": [ref.name]}, op.label, when)


def retain(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    names = []
    for i, text in enumerate(as_strs(op.config.get("fields"), f"{op.path}.fields")):
        ref = ctx.scope.ref(text, f"{op.path}.fields[{i}]")
        if ref.kind == "field":
            names.append(ref.name)
    if not names:
        raise Unsupported(op.path, "names no extracted field to keep")
    ctx.stage("retain", {"fields": names}, op.label, when)


def flatten(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    ref = _ref(ctx, op, "field")
    if ref.kind != "field":
        raise Unsupported(f"{op.path}.field", f"flattens {ref.kind}: shipper flattens fields")
    ctx.stage("flatten", {"field": ref.name}, op.label, when)


def regex_replace(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    if op.config.get("regex_name") is not None:
        raise Unsupported(f"{op.path}.regex_name", "shipper's replace stage has no such preset")
    ref = _ref(ctx, op, "field") if op.config.get("field") is not None else Ref("line")
    if ref.kind not in ("line", "field"):
        raise Unsupported(f"{op.path}.field", f"rewrites {ref.kind}: shipper rewrites the line "
                          "or a field")
    options: dict[str, object] = {
        "regex": go_regex(as_str(op.config.get("regex"), f"{op.path}.regex"),
                          f"{op.path}.regex"),
        "replacement": go_replacement(as_str(op.config.get("replace_with", ""),
                                             f"{op.path}.replace_with"))}
    if ref.kind == "field":
        options["field"] = ref.name
    ctx.stage("replace", options, op.label, when)


def noop(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    ctx.done_natively(op.label, "does nothing")


FIELD_OPS: dict[str, Callable[[Ctx, Op, Condition | None, bool], None]] = {
    "move": move_or_copy, "copy": move_or_copy,
    "add": add, "remove": remove, "retain": retain, "flatten": flatten,
    "regex_replace": regex_replace, "noop": noop,
}
