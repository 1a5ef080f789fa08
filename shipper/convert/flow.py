"""The operator chain as stages: the graph's routes become `when:` conditions (or a route
marker field when a route runs several stages), `filter` becomes a drop stage, `recombine` a
multiline stage, and every other operator goes to its converter."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from shipper.convert.conditions import Condition, all_of, any_of, negate, translate
from shipper.convert.context import Ctx
from shipper.convert.expr import Compare, Lit, Not, ParseError, Path
from shipper.convert.expr import parse as parse_expr
from shipper.convert.fieldops import FIELD_OPS
from shipper.convert.fields import Scope, parse_path
from shipper.convert.graph import ALWAYS, Op, Reach, reach, read_ops
from shipper.convert.parsers import PARSERS, is_envelope
from shipper.convert.report import Finding, Unsupported
from shipper.convert.source import as_list, as_str
from shipper.convert.units import duration, go_regex, seconds, size

Handler = Callable[[Ctx, Op, "Condition | None", bool], None]
HANDLERS: dict[str, Handler] = {**PARSERS, **FIELD_OPS}
# Operators shipper has no stage for that never drop or hold an entry (with on_error: send):
# leaving them out changes what is in a line or its fields, never which lines are shipped.
PASSIVE = {"csv_parser", "uri_parser", "syslog_parser", "trace_parser", "scope_name_parser",
           "json_array_parser", "unquote", "assign_keys", "strip_ansi_escape_codes",
           "sanitize_utf8", "key_value_parser", "regex_parser", "json_parser", "add", "move",
           "copy", "remove", "retain", "flatten", "severity_parser", "time_parser", "container",
           "regex_replace", "noop", "sanitize"}


def _deciding(text: str, scope: Scope, where: str) -> Condition:
    """A condition that decides which entries are shipped (a route's, a filter's): one that
    cannot be converted changes which lines are shipped."""
    try:
        return translate(text, scope, where)
    except Unsupported as exc:
        raise Unsupported(exc.finding.path, exc.finding.reason, changes_lines=True) from None


def _writes(op: Op) -> set[str]:
    """What an operator may change: the line, fields, both or neither."""
    if op.type in ("time_parser", "noop", "filter", "container"):
        return set()
    if op.type in ("move", "copy", "regex_replace"):
        target = op.config.get("to" if op.type != "regex_replace" else "field", "body")
        return {"line"} if target in ("body", "$", "$body") else {"fields"}
    return {"fields"}


class Chain:
    def __init__(self, ctx: Ctx, ops: list[Op], ways: list[Reach]) -> None:
        self.ctx, self.ops, self.ways = ctx, ops, ways
        self.branch_conds: dict[int, list[Condition | None]] = {}  # router: per branch
        self.markers: list[str] = []

    def choice(self, router: int, branch: int) -> Condition | None:
        conds = self.branch_conds.get(router)
        return conds[branch] if conds and branch < len(conds) else None

    def when(self, way: Reach) -> Condition | None:
        if way == ALWAYS:
            return None
        return any_of([all_of(*(self.choice(r, b) for r, b in sorted(alt)))
                       for alt in sorted(way, key=sorted)])

    def run(self) -> None:
        for op in self.ops:
            way = self.ways[op.index]
            if not way:
                self.ctx.report.differs(op.path, f"never reached: no operator sends to "
                                        f"{op.id!r}, so the Collector never ran it either")
                continue
            when = self.when(way)
            if op.type == "router":
                self.ctx.attempt(self.router, op, when)
            else:
                self.ctx.attempt(self.operator, op, when)
        if self.markers:
            self.ctx.stage("remove", {"fields": self.markers}, "the route markers above")

    def needs_marker(self, router: Op, exprs: list[Condition]) -> bool:
        """Each route's stages test their route's condition when they run: that is the
        router's decision only if every route is one single-stage operator and no route's
        operator writes what the conditions read (else, for one, an entry could change
        routes)."""
        per_branch = Counter(choice for way in self.ways if way != ALWAYS
                             for choice in {c for alt in way for c in alt
                                            if c[0] == router.index})
        ops_by_id = {op.id: op for op in self.ops}
        targets = [ops_by_id[t] for outs in router.branches() for t in outs if t in ops_by_id]
        read = {part for part, key in (("line", "'line'"), ("fields", "'field'"))
                if key in repr(exprs)}
        return any(n > 1 for n in per_branch.values()) or any(
            "severity" in t.config or t.type in ("router", "recombine") or read & _writes(t)
            for t in targets)

    def router(self, op: Op, when: Condition | None) -> None:
        scope, ops_by_id = self.ctx.scope, {o.id: o for o in self.ops}
        outputs = [ops_by_id[t] for _, outs in op.routes for t in outs if t in ops_by_id]
        if scope.raw and outputs and all(is_envelope(o, scope) for o in outputs):
            self.ctx.envelope_ops |= {o.id for o in outputs}
            self.branch_conds[op.index] = [None] * len(op.branches())
            self.ctx.done_natively(op.label, "picks a parser by the runtime's log format; "
                                   "shipper detects Docker, CRI-O and containerd lines itself")
            return
        if not op.routes:
            raise Unsupported(f"{op.path}.routes", "a router without routes", changes_lines=True)
        exprs = [_deciding(expr, scope, f"{op.path}.routes[{j}].expr")
                 for j, (expr, _) in enumerate(op.routes)]
        taken = any_of(list(exprs))
        assert taken is not None
        branch = [all_of(e, *[negate(p) for p in exprs[:j]]) for j, e in enumerate(exprs)]
        if op.default:
            branch.append(negate(taken))
        else:
            self.ctx.stage("drop", all_of(when, negate(taken)) or {},
                           f"{op.label}: an entry no route takes is dropped")
        for j, route in enumerate(as_list(op.config.get("routes"), f"{op.path}.routes")):
            if isinstance(route, dict) and isinstance(route.get("attributes"), dict):
                fields = {str(k): str(v) for k, v in route["attributes"].items()}
                self.ctx.stage("set", {"fields": fields}, f"{op.path}.routes[{j}].attributes",
                               all_of(when, branch[j]))
        if not self.needs_marker(op, exprs):
            self.branch_conds[op.index] = branch
            return
        marker = "otel_route_" + re.sub(r"\W", "_", op.id)
        self.markers.append(marker)
        names = [",".join(outs) for outs in op.branches()]
        # Set in reverse: where several routes match, the first one's value is the last set.
        for j in reversed(range(len(branch))):
            self.ctx.stage("set", {"fields": {marker: names[j]}},
                           f"{op.label}: marks the route taken ({names[j]})",
                           all_of(when, exprs[j] if j < len(exprs) else branch[j]))
        self.branch_conds[op.index] = [{"field": marker, "value": n} for n in names]

    def operator(self, op: Op, when: Condition | None) -> None:
        on_error = op.config.get("on_error", "send")
        if on_error in ("drop", "drop_quiet"):
            raise Unsupported(f"{op.path}.on_error", f"{on_error}: the Collector drops an entry "
                              "this operator fails on; shipper's stages leave it as it was",
                              changes_lines=True)
        if op.config.get("if") is not None:
            condition = as_str(op.config["if"], f"{op.path}.if")
            when = all_of(when, translate(condition, self.ctx.scope, f"{op.path}.if"))
        if op.type == "filter":
            self.filter(op, when)
        elif op.type == "recombine":
            recombine(self.ctx, op, when)
        elif op.type in HANDLERS:
            HANDLERS[op.type](self.ctx, op, when, op.id in self.ctx.envelope_ops)
        else:
            raise Unsupported(op.path, f"no shipper stage does what {op.type!r} does",
                              changes_lines=op.type not in PASSIVE)

    def filter(self, op: Op, when: Condition | None) -> None:
        ratio = op.config.get("drop_ratio", 1.0)
        if ratio != 1 and ratio != 1.0:
            raise Unsupported(f"{op.path}.drop_ratio", f"{ratio}: shipper drops every matching "
                              "entry, it does not sample", changes_lines=True)
        expr = _deciding(as_str(op.config.get("expr"), f"{op.path}.expr"), self.ctx.scope,
                         f"{op.path}.expr")
        self.ctx.check_levels(expr, op.path)
        self.ctx.stage("drop", all_of(when, expr) or {}, op.label)


def recombine(ctx: Ctx, op: Op, when: Condition | None) -> None:
    """recombine joins consecutive entries: shipper's multiline stage, or CRI's partial lines
    (`is_last_entry: attributes.logtag == 'F'`), which shipper joins itself."""
    cfg, where = op.config, op.path
    first, last = cfg.get("is_first_entry"), cfg.get("is_last_entry")
    if (first is None) == (last is None):
        raise Unsupported(where, "needs exactly one of is_first_entry and is_last_entry",
                          changes_lines=True)
    key = "is_first_entry" if first is not None else "is_last_entry"
    text = as_str(first if first is not None else last, f"{where}.{key}")
    try:
        node = parse_expr(text)
    except ParseError as exc:
        raise Unsupported(f"{where}.{key}", f"cannot read {text!r}: {exc}",
                          changes_lines=True) from None
    negated = isinstance(node, Not)
    test = node.item if isinstance(node, Not) else node
    if not (isinstance(test, Compare) and isinstance(test.left, Path) and
            isinstance(test.right, Lit) and isinstance(test.right.value, str)):
        raise Unsupported(f"{where}.{key}", f"{text!r}: shipper's multiline stage recognises "
                          "lines by a regex on the line", changes_lines=True)
    tested = ctx.scope.resolve(parse_path(test.left.text, where))
    if tested.kind == "native" and key == "is_last_entry" and test.op == "==" and \
            test.right.value == "F" and not negated:
        ctx.done_natively(op.label, "joins CRI partial lines (P...F); shipper does this itself")
        return
    combined = ctx.scope.ref(as_str(cfg.get("combine_field", "body"), f"{where}.combine_field"),
                             f"{where}.combine_field")
    if tested.kind != "line" or combined.kind != "line" or test.op != "matches":
        raise Unsupported(where, "shipper's multiline stage joins lines by a regex on the line "
                          f"({key}: {text!r}, combine_field: {cfg.get('combine_field')!r})",
                          changes_lines=True)
    if when is not None:
        raise Unsupported(where, "runs on one route only: shipper's multiline stage cannot be "
                          "conditional", changes_lines=True)
    regex = go_regex(test.right.value, f"{where}.{key}")
    mode = "continuation" if negated and key == "is_first_entry" else (
        "first_line" if key == "is_first_entry" else "last_line")
    if negated and key == "is_last_entry":
        raise Unsupported(f"{where}.{key}", "a negated last-line test has no multiline mode",
                          changes_lines=True)
    options: dict[str, object] = {mode: regex}
    if (combine_with := cfg.get("combine_with", "\n")) != "\n":
        options["separator"] = as_str(combine_with, f"{where}.combine_with")
    options["max_lines"] = cfg.get("max_batch_size", 1000)
    if cfg.get("max_log_size"):
        options["max_bytes"] = size(cfg["max_log_size"], f"{where}.max_log_size")
    else:
        ctx.report.differs(where, "max_log_size 0 (no limit): shipper caps a group at "
                           "multiline.max_bytes (256KiB) and starts a new one past it")
    wait = seconds(cfg.get("force_flush_period", "5s"), f"{where}.force_flush_period")
    if wait > 0:
        options["max_wait"] = duration(wait)
    if cfg.get("source_identifier", 'attributes["log.file.path"]') not in (
            'attributes["log.file.path"]', "attributes.log.file.path"):
        ctx.report.differs(f"{where}.source_identifier", "shipper groups lines per file and "
                           "output stream")
    ctx.stage("multiline", options, op.label)


def convert_operators(ctx: Ctx, raw: object, path: str) -> None:
    findings: list[Finding] = []
    try:
        ops = read_ops(raw, path, findings)
    except Unsupported as exc:
        ctx.report.add(Finding(exc.finding.path, exc.finding.reason, changes_lines=True))
        return
    ways = reach(ops, findings)
    for finding in findings:
        ctx.report.add(finding)
    Chain(ctx, ops, ways).run()
