"""The filter processor: OTTL conditions (`logs.log_record`) and the older include/exclude
match properties, as drop stages, or as inputs globs where a condition names whole namespaces,
pods or containers (exact in kubelet's file names, and cheaper: those files are never read)."""

from __future__ import annotations

from shipper.convert.conditions import Condition, Translator, literal
from shipper.convert.context import Ctx
from shipper.convert.expr import BoolOp, Compare, Lit, Node, ParseError, Path, parse
from shipper.convert.fields import SOURCES, parse_path
from shipper.convert.report import Unsupported
from shipper.convert.source import Component, as_list, as_map, as_str, as_strs

_HEX64 = "?" * 64  # a container id in /var/log/containers names


def _equalities(node: Node) -> list[tuple[str, str]] | None:
    """(source, value) pairs when `node` is `resource...["k8s.x.name"] == "v"` or an `or` of
    them; None otherwise."""
    items = node.items if isinstance(node, BoolOp) and node.op == "or" else (node,)
    pairs = []
    for item in items:
        if not (isinstance(item, Compare) and item.op == "==" and isinstance(item.left, Path)
                and isinstance(item.right, Lit) and isinstance(item.right.value, str)):
            return None
        path = parse_path(item.left.text, "")
        source = SOURCES.get(".".join(path.keys)) if path.root == "resource" else None
        if source not in ("namespace", "pod", "container"):
            return None
        pairs.append((source, item.right.value))
    return pairs


def _glob(include: str, source: str, value: str) -> str | None:
    """A glob for one include glob's files of that namespace, pod or container."""
    directory = include.rsplit("/", 1)[0]
    if include.startswith("/var/log/containers/"):
        return {"namespace": f"{directory}/*_{value}_*.log", "pod": f"{directory}/{value}_*.log",
                "container": f"{directory}/*_*_{value}-{_HEX64}.log"}[source]
    if include.startswith("/var/log/pods/"):
        return {"namespace": f"/var/log/pods/{value}_*", "pod": f"/var/log/pods/*_{value}_*",
                "container": f"/var/log/pods/*/{value}/*"}[source]
    return None


def _exclude(ctx: Ctx, pairs: list[tuple[str, str]], where: str) -> bool:
    includes = ctx.out.get("inputs.paths") or ["/var/log/containers/*.log"]
    globs = [_glob(inc, source, value) for inc in includes for source, value in pairs]
    if any(g is None for g in globs):
        return False
    excluded = list(ctx.out.get("inputs.exclude") or [])
    ctx.out.set("inputs.exclude", excluded + [g for g in globs if g not in excluded], where)
    return True


def _condition(ctx: Ctx, text: str, where: str) -> None:
    try:
        node = parse(text)
    except ParseError as exc:
        raise Unsupported(where, f"cannot read {text!r}: {exc}", changes_lines=True) from None
    pairs = _equalities(node)
    if pairs and _exclude(ctx, pairs, where):
        return
    try:
        condition = Translator(ctx.scope, where).convert(node)
    except Unsupported as exc:
        raise Unsupported(where, exc.finding.reason, changes_lines=True) from None
    ctx.check_levels(condition, where)
    ctx.stage("drop", condition, where)


def _properties(ctx: Ctx, kind: str, raw: object, where: str) -> None:
    """The older match properties (exclude: drop, include: keep): every attribute given must
    match."""
    ctx.stage(kind, _matches(as_map(raw, where), where), where)


def _matches(cfg: dict[str, object], where: str) -> Condition:
    regexp = cfg.get("match_type") == "regexp"
    given = [k for k in ("resource_attributes", "record_attributes", "bodies",
                         "severity_texts", "severity_number", "log_names") if cfg.get(k)]
    if given != ["record_attributes"] and given != ["bodies"]:
        raise Unsupported(where, f"matching on {', '.join(given) or 'nothing'}: shipper "
                          "converts record_attributes or bodies", changes_lines=True)
    if given == ["bodies"]:
        bodies = as_strs(cfg["bodies"], f"{where}.bodies")
        return {"any": [{"line": b if regexp else f"^{literal(b)}$"} for b in bodies]}
    tests: list[Condition] = []
    for i, raw in enumerate(as_list(cfg["record_attributes"], f"{where}.record_attributes")):
        attr = {k.lower(): v for k, v in as_map(raw, f"{where}.record_attributes[{i}]").items()}
        key = as_str(attr.get("key"), f"{where}.record_attributes[{i}].key")
        value = as_str(attr.get("value"), f"{where}.record_attributes[{i}].value")
        tests.append({"field": key, "matches": value} if regexp else
                     {"field": key, "value": value})
    return tests[0] if len(tests) == 1 else {"all": tests}


def filter_processor(ctx: Ctx, comp: Component) -> None:
    logs = as_map(comp.config.get("logs"), f"{comp.path}.logs")
    records = logs.get("log_record", comp.config.get("log_conditions"))
    where = f"{comp.path}.logs.log_record" if "log_record" in logs else \
        f"{comp.path}.log_conditions"
    for i, text in enumerate(as_strs(records, where) if records is not None else []):
        ctx.attempt(_condition, ctx, text, f"{where}[{i}]")
    for key, kind in (("exclude", "drop"), ("include", "keep")):
        if logs.get(key) is not None:
            at = f"{comp.path}.logs.{key}"
            ctx.attempt(_properties, ctx, kind, logs[key], at)
