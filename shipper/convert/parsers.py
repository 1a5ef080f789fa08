"""Parser operators (json_parser, regex_parser, key_value_parser, severity_parser,
time_parser, container) as shipper's parsing stages; the ones that parse the runtime's own
envelope (Docker JSON, CRI) are what shipper does natively before any stage."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shipper.convert.context import Ctx
from shipper.convert.fields import FieldPath, Ref, Scope, parse_path
from shipper.convert.report import Unsupported
from shipper.convert.source import as_bool, as_map, as_str
from shipper.convert.timefmt import timestamp_format
from shipper.convert.units import go_regex, size

if TYPE_CHECKING:
    from collections.abc import Callable

    from shipper.convert.conditions import Condition
    from shipper.convert.graph import Op

# Severity aliases of the Collector (trace..fatal4, default) as Loki's levels
_LEVELS = {"trace": "trace", "debug": "debug", "info": "info", "warn": "warn",
           "error": "error", "fatal": "fatal", "default": "unknown"}
_CRI_GROUPS = {"time": Ref("time"), "stream": Ref("source", "stream"), "logtag": Ref("native"),
               "log": Ref("line")}
_DOCKER_KEYS = {"log": Ref("line"), "time": Ref("time"), "stream": Ref("source", "stream")}
# Group names of a regex that reads pod metadata from the log file's path
_PATH_GROUPS = {"namespace": Ref("source", "namespace"), "pod_name": Ref("source", "pod"),
                "uid": Ref("source", "pod_uid"), "container_name": Ref("source", "container"),
                "restart_count": Ref("native"), "run_id": Ref("native")}


def _source(ctx: Ctx, op: Op, default: str = "body") -> tuple[dict[str, object], Ref]:
    """The `source:` option for what the operator parses (the line, or a field)."""
    where = f"{op.path}.parse_from"
    ref = ctx.scope.ref(as_str(op.config.get("parse_from", default), where), where)
    if ref.kind == "line":
        return {}, ref
    if ref.kind == "field":
        return {"source": ref.name}, ref
    raise Unsupported(where, f"parses {ref.kind} ({ref.name or 'the body'}), which no shipper "
                      "stage reads")


def _parse_to(ctx: Ctx, op: Op, default: str) -> FieldPath:
    where = f"{op.path}.parse_to"
    target = parse_path(as_str(op.config.get("parse_to", default), where), where)
    if target.keys:
        raise Unsupported(where, f"{target}: shipper's parsers write fields at the top level, "
                          "not under a prefix")
    ctx.scope.body_map = ctx.scope.body_map or target.root == "body"
    return target


def _read_field(ctx: Ctx, cfg: dict[str, object], where: str, what: str) -> str:
    """The extracted field a timestamp or severity block reads."""
    ref = ctx.scope.ref(as_str(cfg.get("parse_from"), f"{where}.parse_from"),
                        f"{where}.parse_from")
    if ref.kind != "field":
        raise Unsupported(f"{where}.parse_from", f"the {what} is read from {ref.kind}: shipper "
                          f"reads a {what} from an extracted field")
    return ref.name


def timestamp(ctx: Ctx, cfg: dict[str, object], where: str) -> dict[str, str]:
    """A timestamp block (or time_parser) as shipper's {source, format}."""
    source = _read_field(ctx, cfg, where, "timestamp")
    fmt = timestamp_format(as_str(cfg.get("layout_type", "strptime"), f"{where}.layout_type"),
                           as_str(cfg.get("layout", ""), f"{where}.layout"), f"{where}.layout")
    location = cfg.get("location")
    zoned = fmt.startswith("unix") or fmt == "rfc3339" or "%z" in fmt or "%Z" in fmt
    if location not in (None, "", "UTC", "Local") and not zoned:
        ctx.report.differs(f"{where}.location", f"{location}: shipper reads a timestamp "
                           "without a zone as UTC")
    if "%Z" in fmt:
        ctx.report.differs(f"{where}.layout", "a zone name (%Z): shipper's strptime reads UTC "
                           "and GMT, not abbreviations such as EST")
    return {"source": source, "format": fmt}


def level(ctx: Ctx, cfg: dict[str, object], where: str) -> dict[str, object]:
    """A severity block (or severity_parser) as shipper's level stage."""
    source = _read_field(ctx, cfg, where, "severity")
    mapping: dict[str, str] = {}
    for alias, values in as_map(cfg.get("mapping"), f"{where}.mapping").items():
        loki = _LEVELS.get(re.sub(r"[234]$", "", alias.lower()))
        if loki is None:
            raise Unsupported(f"{where}.mapping.{alias}", f"unknown severity {alias!r}")
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, dict) or (isinstance(value, str) and
                                            re.fullmatch(r"[1-5]xx", value)):
                ctx.report.unmapped(f"{where}.mapping.{alias}", f"the range {value!r}: shipper "
                                    "maps single values to levels")
                continue
            mapping[as_str(value, f"{where}.mapping.{alias}")] = loki
    if cfg.get("preset") == "none":
        ctx.report.differs(f"{where}.preset", "none: shipper's level stage still recognises "
                           "the usual names (error, WARN, info...) after the mapping")
    options: dict[str, object] = {"field": source}
    if mapping:
        options["mapping"] = mapping
    return options


def _blocks(ctx: Ctx, op: Op, options: dict[str, object], produced: set[str] | None,
            kind: str, when: Condition | None) -> None:
    """The parser's stage, with its timestamp block inside when it reads what the parser
    extracts, else as a timestamp stage after it; a severity block becomes a level stage."""
    after: list[tuple[str, dict[str, object]]] = []

    if op.config.get("timestamp") is not None:
        where = f"{op.path}.timestamp"
        ts = timestamp(ctx, as_map(op.config["timestamp"], where), where)
        if produced is None or ts["source"] in produced:
            options["timestamp"] = ts
        else:
            after.append(("timestamp", dict(ts)))
    if op.config.get("severity") is not None:
        where = f"{op.path}.severity"
        after.append(("level", level(ctx, as_map(op.config["severity"], where), where)))
    ctx.stage(kind, options, op.label, when)
    for stage_kind, stage_options in after:
        ctx.stage(stage_kind, stage_options, f"{op.label}: its {stage_kind} block", when)


def _groups(op: Op) -> list[str]:
    """The regex's named groups, in the order written."""
    pattern = go_regex(as_str(op.config.get("regex"), f"{op.path}.regex"), f"{op.path}.regex")
    return list(re.compile(pattern).groupindex)


def is_envelope(op: Op, scope: Scope) -> bool:
    """Whether `op` parses the runtime's line itself (body still raw): Docker's JSON envelope,
    or CRI's `<time> <stream> <tag> <log>` by regex."""
    if op.config.get("parse_from", "body") not in ("body", "$", "$body", "$record"):
        return False
    if op.type == "json_parser":
        return True
    try:
        groups = _groups(op) if op.type == "regex_parser" else []
        return "log" in groups and bool({"time", "stream"} & set(groups))
    except Unsupported:
        return False


def _envelope(ctx: Ctx, op: Op, names: dict[str, Ref], what: str) -> None:
    target = _parse_to(ctx, op, "attributes")
    for name, ref in names.items():
        ctx.scope.aliases[FieldPath(target.root, (name,))] = ref
    ctx.scope.raw = ctx.scope.body_map = False
    ctx.labels.add(ctx.labels.carried, "stream", op.label)
    block = op.config.get("timestamp")
    if block is not None:
        where = f"{op.path}.timestamp.parse_from"
        parse_from = as_str(as_map(block, f"{op.path}.timestamp").get("parse_from"), where)
        if ctx.scope.ref(parse_from, where).kind != "time":
            raise Unsupported(where, f"{parse_from}: shipper takes the timestamp the runtime "
                              "wrote")
        what += f"; its timestamp block ({parse_from}) is that timestamp"
    if op.config.get("severity") is not None:
        ctx.report.unmapped(f"{op.path}.severity", "a severity in the runtime's envelope: "
                            "there is none")
    ctx.done_natively(op.label, what)


def json_parser(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    if (envelope or ctx.scope.raw) and is_envelope(op, ctx.scope):
        _envelope(ctx, op, _DOCKER_KEYS, "the Docker json-file envelope: shipper parses it "
                  "natively (line from log, stream, timestamp from time to the nanosecond); "
                  "on CRI nodes it parses CRI lines the same way")
        return
    options, _ = _source(ctx, op)
    _parse_to(ctx, op, "attributes")
    _blocks(ctx, op, options, None, "json", when)


def regex_parser(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    groups = _groups(op)
    if (envelope or ctx.scope.raw) and is_envelope(op, ctx.scope):
        _envelope(ctx, op, {g: _CRI_GROUPS.get(g, Ref("native")) for g in groups},
                  "the CRI line format (time, stream, P/F tag, message): shipper parses it "
                  "natively, joining partial lines")
        return
    where = f"{op.path}.parse_from"
    parsed = ctx.scope.ref(as_str(op.config.get("parse_from", "body"), where), where)
    if parsed.kind == "file" and set(groups) <= set(_PATH_GROUPS):
        target = _parse_to(ctx, op, "attributes")
        for group in groups:
            ref = ctx.scope.aliases[FieldPath(target.root, (group,))] = _PATH_GROUPS[group]
            if ref.kind == "source":
                ctx.labels.add(ctx.labels.carried, ref.name, op.label)
        ctx.done_natively(op.label, "reads namespace, pod, uid and container from the "
                          "file's path; shipper does this itself")
        return
    options, _ = _source(ctx, op)
    _parse_to(ctx, op, "attributes")
    options = {"expression": go_regex(as_str(op.config.get("regex"), f"{op.path}.regex"),
                                      f"{op.path}.regex"), **options}
    _blocks(ctx, op, options, set(groups), "regex", when)


def key_value_parser(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    delimiter = op.config.get("delimiter", "=")
    pairs = op.config.get("pair_delimiter")
    if delimiter != "=" or pairs not in (None, " "):
        raise Unsupported(op.path, f"delimiter {delimiter!r}, pair_delimiter {pairs!r}: "
                          "shipper's logfmt stage reads key=value pairs separated by spaces")
    options, _ = _source(ctx, op)
    _parse_to(ctx, op, "body")
    _blocks(ctx, op, options, None, "logfmt", when)


def severity_parser(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    ctx.stage("level", level(ctx, op.config, op.path), op.label, when)


def time_parser(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    ctx.stage("timestamp", dict(timestamp(ctx, op.config, op.path)), op.label, when)


def container(ctx: Ctx, op: Op, when: Condition | None, envelope: bool) -> None:
    cfg = op.config
    for key, default in (("parse_from", "body"), ("parse_to", "attributes")):
        if cfg.get(key, default) != default:
            raise Unsupported(f"{op.path}.{key}", "shipper parses the runtime's line itself, "
                              "from the file")
    if "max_log_size" in cfg:
        limit = size(cfg["max_log_size"], f"{op.path}.max_log_size")
        if limit and ctx.out.get("inputs.max_line_bytes") is None:
            ctx.out.set("inputs.max_line_bytes", limit, f"{op.path}.max_log_size")
            ctx.report.differs(f"{op.path}.max_log_size", "a joined line longer than this is "
                               "truncated by shipper; the Collector flushed it in parts")
    ctx.scope.raw = False
    ctx.scope.aliases[FieldPath("attributes", ("logtag",))] = Ref("native")
    from_path = as_bool(cfg.get("add_metadata_from_filepath", True),
                        f"{op.path}.add_metadata_from_filepath")
    for source in ("namespace", "pod", "pod_uid", "container") if from_path else ():
        ctx.labels.add(ctx.labels.carried, source, op.label)
    ctx.labels.add(ctx.labels.carried, "stream", op.label)  # log.iostream
    ctx.done_natively(op.label, "parses Docker, CRI-O and containerd lines and reads pod "
                      "metadata from the path: shipper does both natively")
    if cfg.get("severity") is not None:
        where = f"{op.path}.severity"
        ctx.stage("level", level(ctx, as_map(cfg["severity"], where), where), op.label, when)


PARSERS: dict[str, Callable[[Ctx, Op, Condition | None, bool], None]] = {
    "json_parser": json_parser, "regex_parser": regex_parser,
    "key_value_parser": key_value_parser, "severity_parser": severity_parser,
    "time_parser": time_parser, "container": container,
}
