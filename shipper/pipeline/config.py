"""The `pipeline:` section: rules of stages, read strictly into frozen values (no I/O here).

Every error names its key the way a user finds it in the file, e.g.
`config key 'pipeline[2].stages[0].first_line': invalid regex at position 3: ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from shipper.schema import Bytes, ConfigError, Seconds, StrMap, build

LEVELS = ("fatal", "critical", "error", "warn", "info", "debug", "trace", "unknown")  # Loki's
MULTILINE_PRESETS = ("java", "python", "go", "ruby", "dotnet")
REDACTION_PRESETS = ("email", "card", "bearer", "jwt")
TIMESTAMP_FORMATS = ("rfc3339", "unix", "unix_ms", "unix_us", "unix_ns")  # or a strftime %-pattern
MATCH_KEYS = ("namespace", "pod", "container", "app", "workload", "node", "stream")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Tenant IDs as Loki (dskit) accepts them: at most 150 of these characters, not "." or "..".
_TENANT = re.compile(r"^[a-zA-Z0-9!\-_.*'()]{1,150}$")
_GROUP_REF = re.compile(r"\\(\d+)|\\g<([^>]*)>")  # \1 or \g<name> in a replacement


# -- conditions (drop, keep, and `when:` on any stage) -------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    """Holds when every criterion given holds."""

    line: str = ""  # regex found in the line
    field: str = ""  # an extracted field...
    value: str | None = None  # ...equal to this
    matches: str = ""  # ...or in which this regex is found (neither: the field exists)
    level: tuple[str, ...] = ()  # its level (detected_level, else detected) is one of these
    older_than: float = 0.0  # seconds: the entry's timestamp is older than this
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    not_: Condition | None = None


# -- stage options ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MultilineConfig:
    preset: str = ""  # java, python, go, ruby, dotnet
    # The three regexes are searched anywhere in the line (re.search): anchor them with ^.
    first_line: str = ""  # regex: a matching line starts a group, others continue it
    continuation: str = ""  # regex: a matching line continues the group, others start one
    last_line: str = ""  # regex: a matching line ends the group
    max_lines: int = 500
    max_bytes: Bytes = 256 * 1024  # of the joined line, in UTF-8
    max_wait: Seconds = 3.0  # an unfinished group is shipped this long after its last line
    separator: str = "\n"
    overflow: Literal["split", "truncate"] = "split"  # past a cap: a new group, or drop the rest


@dataclass(frozen=True, slots=True)
class TimestampConfig:
    source: str = ""  # JSON path, logfmt key, regex group, or field (timestamp stage)
    format: str = "rfc3339"  # rfc3339, unix, unix_ms, unix_us, unix_ns, or a strftime %-pattern


@dataclass(frozen=True, slots=True)
class JsonConfig:
    fields: StrMap = ()  # field name: dotted path; empty: every leaf, under its dotted path
    source: str = ""  # a field to parse instead of the line
    timestamp: TimestampConfig = field(default_factory=TimestampConfig)
    line: str = ""  # path whose value becomes the line


@dataclass(frozen=True, slots=True)
class LogfmtConfig:
    fields: StrMap = ()  # field name: key; empty: every key
    source: str = ""
    timestamp: TimestampConfig = field(default_factory=TimestampConfig)
    line: str = ""


@dataclass(frozen=True, slots=True)
class RegexConfig:
    expression: str = ""  # named groups become fields
    fields: StrMap = ()  # field name: group; empty: every named group
    source: str = ""
    timestamp: TimestampConfig = field(default_factory=TimestampConfig)
    line: str = ""


@dataclass(frozen=True, slots=True)
class LevelConfig:
    field: str = ""  # read the level from this field; empty: detect it from the line
    mapping: StrMap = ()  # raw value: Loki level, before the built-in names


@dataclass(frozen=True, slots=True)
class ReplaceConfig:
    regex: str = ""
    preset: str = ""  # email, card, bearer, jwt
    replacement: str = "<redacted>"  # \1 and \g<name> refer to groups; with a preset: literal
    field: str = ""  # rewrite this field instead of the line


@dataclass(frozen=True, slots=True)
class LabelsConfig:
    fields: StrMap = ()  # label name: field name (a list: the same names)
    max_values: int = 100  # distinct values per label on this node; more go to metadata


@dataclass(frozen=True, slots=True)
class TenantConfig:
    value: str = ""
    pod_label: str = ""
    pod_annotation: str = ""
    namespace: bool = False
    field: str = ""
    default: str = ""  # when the label, annotation or field is missing ("": loki.tenant_id)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    lines_per_second: float = 0.0
    burst: int = 0  # 0: one second's worth
    action: Literal["drop", "hold"] = "drop"


@dataclass(frozen=True, slots=True)
class SetConfig:
    fields: StrMap = ()  # field name: constant value


@dataclass(frozen=True, slots=True)
class MoveConfig:
    from_: str = ""  # a field, or "line"
    to: str = ""


@dataclass(frozen=True, slots=True)
class CopyConfig:
    from_: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class FieldListConfig:
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FlattenConfig:
    field: str = ""  # fields "<field>.x" move up a level: "x" (for a.b, "a.b.x" -> "a.x")


StageOptions = (MultilineConfig | JsonConfig | LogfmtConfig | RegexConfig | TimestampConfig
                | LevelConfig | Condition | ReplaceConfig | LabelsConfig | TenantConfig
                | RateLimitConfig | SetConfig | MoveConfig | CopyConfig | FieldListConfig
                | FlattenConfig)

STAGE_TYPES: dict[str, type] = {
    "multiline": MultilineConfig, "json": JsonConfig, "logfmt": LogfmtConfig,
    "regex": RegexConfig, "timestamp": TimestampConfig, "level": LevelConfig,
    "drop": Condition, "keep": Condition, "replace": ReplaceConfig, "labels": LabelsConfig,
    "tenant": TenantConfig, "rate_limit": RateLimitConfig, "set": SetConfig,
    "move": MoveConfig, "copy": CopyConfig, "remove": FieldListConfig,
    "retain": FieldListConfig, "flatten": FlattenConfig,
}


@dataclass(frozen=True, slots=True)
class StageConfig:
    type: str  # a key of STAGE_TYPES
    options: StageOptions
    when: Condition | None = None  # the stage applies only to records for which this holds
    key: str = ""  # where it was written, e.g. pipeline[0].stages[2], for messages


@dataclass(frozen=True, slots=True)
class Match:
    """Selects streams: every key given must match (a value or glob, or any of a list)."""

    values: tuple[tuple[str, tuple[str, ...]], ...] = ()  # MATCH_KEYS key: patterns
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # pod label: patterns


@dataclass(frozen=True, slots=True)
class Rule:
    stages: tuple[StageConfig, ...]
    match: Match = field(default_factory=Match)
    name: str = ""


# -- reading ---------------------------------------------------------------------------------

def compile_regex(key: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ConfigError(key, f"invalid regex{where}: {exc.msg} (in {pattern!r})") from None


def _mapping(key: str, raw: object) -> dict[str, object]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ConfigError(key, f"expected a mapping, got {raw!r}")
    return raw


def _patterns(key: str, raw: object) -> tuple[str, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, str | int) and not isinstance(v, bool)
                             for v in values):
        raise ConfigError(key, f"expected a value, a glob or a list of them, got {raw!r}")
    return tuple(str(v) for v in values)


def read_match(key: str, raw: object) -> Match:
    raw = _mapping(key, raw)
    values, labels = [], []
    for name, value in raw.items():
        if name == "labels":
            labels = [(k, _patterns(f"{key}.labels.{k}", v))
                      for k, v in _mapping(f"{key}.labels", value).items()]
        elif name in MATCH_KEYS:
            values.append((name, _patterns(f"{key}.{name}", value)))
        else:
            raise ConfigError(f"{key}.{name}", "unknown key (known here: "
                              f"{', '.join((*MATCH_KEYS, 'labels'))})")
    return Match(tuple(values), tuple(labels))


def read_condition(key: str, raw: object) -> Condition:
    raw = _mapping(key, raw)
    nested: dict[str, object] = {}
    for name in ("all", "any"):
        if name in raw:
            items = raw[name]
            if not isinstance(items, list) or not items:
                raise ConfigError(f"{key}.{name}", f"expected a list of conditions, got {items!r}")
            nested[name] = tuple(read_condition(f"{key}.{name}[{i}]", c)
                                 for i, c in enumerate(items))
    if "not" in raw:
        nested["not_"] = read_condition(f"{key}.not", raw["not"])
    plain = {k: v for k, v in raw.items() if k not in ("all", "any", "not")}
    if "value" in plain and not isinstance(plain["value"], str | int | float | bool):
        raise ConfigError(f"{key}.value", f"expected a string, got {plain['value']!r}")
    if "value" in plain:
        value = plain.pop("value")
        nested["value"] = str(value).lower() if isinstance(value, bool) else str(value)
    if "older_than" in plain:  # a duration, which Condition holds as plain seconds
        plain["older_than"] = build(key, _Age, {"older_than": plain["older_than"]}).older_than
    condition: Condition = build(key, Condition, plain)
    condition = Condition(**{**{f: getattr(condition, f) for f in Condition.__slots__},
                             **nested})
    _check_condition(key, condition)
    return condition


@dataclass(frozen=True, slots=True)
class _Age:
    older_than: Seconds = 0.0


def _check_condition(key: str, c: Condition) -> None:
    if c == Condition():
        raise ConfigError(key, "an empty condition: give line, field, level, older_than, "
                          "all, any or not")
    if c.line:
        compile_regex(f"{key}.line", c.line)
    if c.matches:
        compile_regex(f"{key}.matches", c.matches)
    if (c.value is not None or c.matches) and not c.field:
        raise ConfigError(f"{key}.field", "required with value or matches")
    for level in c.level:
        if level not in LEVELS:
            raise ConfigError(f"{key}.level", f"unknown level {level!r} "
                              f"(Loki's levels: {', '.join(LEVELS)})")


def read_stage(key: str, raw: object) -> StageConfig:
    raw = _mapping(key, raw)
    types = [k for k in raw if k != "when"]
    if len(types) != 1:
        raise ConfigError(key, "expected one stage per item, such as `- json: {...}` "
                          f"(stages: {', '.join(STAGE_TYPES)}), got {sorted(types)!r}")
    kind = types[0]
    if kind not in STAGE_TYPES:
        raise ConfigError(key, f"unknown stage {kind!r} (stages: {', '.join(STAGE_TYPES)})")
    options_raw = raw[kind]
    if kind in ("drop", "keep"):
        options: StageOptions = read_condition(key, options_raw)
    else:
        options = build(key, STAGE_TYPES[kind], options_raw)
    when = read_condition(f"{key}.when", raw["when"]) if "when" in raw else None
    if when is not None and kind in ("multiline", "drop", "keep"):
        raise ConfigError(f"{key}.when", f"not allowed on a {kind} stage"
                          + (": its own condition says when" if kind != "multiline" else ""))
    stage = StageConfig(kind, options, when, key)
    _check_stage(key, stage)
    return stage


def read_pipeline(raw: object) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("pipeline", f"expected a list of rules, got {raw!r}")
    rules = []
    for i, rule_raw in enumerate(raw):
        key = f"pipeline[{i}]"
        rule = _mapping(key, rule_raw)
        unknown = set(rule) - {"name", "match", "stages"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}",
                              "unknown key (known here: match, name, stages)")
        stages_raw = rule.get("stages")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise ConfigError(f"{key}.stages", "expected a list of stages")
        name = rule.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{key}.name", f"expected a string, got {name!r}")
        match = read_match(f"{key}.match", rule["match"]) if "match" in rule else Match()
        stages = tuple(read_stage(f"{key}.stages[{j}]", s) for j, s in enumerate(stages_raw))
        rules.append(Rule(stages, match, name))
    return tuple(rules)


# -- per-stage checks: everything a stage needs is known to work before the agent starts --------

def check_label_name(key: str, name: str) -> None:
    if not _LABEL_NAME.match(name) or name.startswith("__"):
        raise ConfigError(key, f"{name!r} is not a label name Loki accepts "
                          "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")


def valid_tenant(tenant: str) -> bool:
    return bool(_TENANT.match(tenant)) and tenant not in (".", "..")


def check_timestamp_format(key: str, fmt: str) -> None:
    if fmt not in TIMESTAMP_FORMATS and "%" not in fmt:
        raise ConfigError(key, f"unknown format {fmt!r}: use {', '.join(TIMESTAMP_FORMATS)} "
                          "or a strftime pattern such as %Y-%m-%d %H:%M:%S")


def _one_of(key: str, given: dict[str, object], what: str) -> str:
    chosen = [name for name, value in given.items() if value]
    if len(chosen) != 1:
        raise ConfigError(key, f"give exactly one of {', '.join(given)} ({what})"
                          + (f"; got {', '.join(chosen)}" if chosen else ""))
    return chosen[0]


def _check_stage(key: str, stage: StageConfig) -> None:
    o = stage.options
    if isinstance(o, MultilineConfig):
        mode = _one_of(key, {"preset": o.preset, "first_line": o.first_line,
                             "continuation": o.continuation, "last_line": o.last_line},
                       "how a group is recognised")
        if mode == "preset" and o.preset not in MULTILINE_PRESETS:
            raise ConfigError(f"{key}.preset", f"unknown preset {o.preset!r} "
                              f"(presets: {', '.join(MULTILINE_PRESETS)})")
        if mode != "preset":
            compile_regex(f"{key}.{mode}", getattr(o, mode))
    elif isinstance(o, JsonConfig | LogfmtConfig | RegexConfig | TimestampConfig):
        timestamp = o if isinstance(o, TimestampConfig) else o.timestamp
        prefix = key if isinstance(o, TimestampConfig) else f"{key}.timestamp"
        if isinstance(o, TimestampConfig) and not o.source:
            raise ConfigError(f"{key}.source", "required: the field holding the timestamp")
        check_timestamp_format(f"{prefix}.format", timestamp.format)
        if isinstance(o, RegexConfig):
            if not o.expression:
                raise ConfigError(f"{key}.expression", "required")
            pattern = compile_regex(f"{key}.expression", o.expression)
            groups = set(pattern.groupindex)
            if not groups:
                raise ConfigError(f"{key}.expression", "has no named group (?P<name>...)")
            for name, group in o.fields:
                if group not in groups:
                    raise ConfigError(f"{key}.fields.{name}", f"no group named {group!r}")
    elif isinstance(o, LevelConfig):
        for raw, level in o.mapping:
            if level not in LEVELS:
                raise ConfigError(f"{key}.mapping.{raw}", f"unknown level {level!r} "
                                  f"(Loki's levels: {', '.join(LEVELS)})")
    elif isinstance(o, ReplaceConfig):
        mode = _one_of(key, {"regex": o.regex, "preset": o.preset}, "what to replace")
        if mode == "preset" and o.preset not in REDACTION_PRESETS:
            raise ConfigError(f"{key}.preset", f"unknown preset {o.preset!r} "
                              f"(presets: {', '.join(REDACTION_PRESETS)})")
        if mode == "regex":
            pattern = compile_regex(f"{key}.regex", o.regex)
            for number, name in _GROUP_REF.findall(o.replacement):
                if (name and name not in pattern.groupindex and not name.isdigit()) or int(
                        number or (name if name.isdigit() else 0)) > pattern.groups:
                    raise ConfigError(f"{key}.replacement",
                                      f"refers to group {number or name!r}, which "
                                      f"{o.regex!r} does not have")
    elif isinstance(o, LabelsConfig):
        if not o.fields:
            raise ConfigError(f"{key}.fields", "required: label name: field name")
        for label, _ in o.fields:
            check_label_name(f"{key}.fields.{label}", label)
    elif isinstance(o, TenantConfig):
        _one_of(key, {"value": o.value, "pod_label": o.pod_label,
                      "pod_annotation": o.pod_annotation, "namespace": o.namespace,
                      "field": o.field}, "where the tenant comes from")
        for name in ("value", "default"):
            tenant = getattr(o, name)
            if tenant and not valid_tenant(tenant):
                raise ConfigError(f"{key}.{name}", f"{tenant!r} is not a tenant ID Loki accepts "
                                  "(up to 150 of a-z A-Z 0-9 ! - _ . * ' ( ), not . or ..)")
    elif isinstance(o, RateLimitConfig):
        if o.lines_per_second <= 0:
            raise ConfigError(f"{key}.lines_per_second", "required, a positive number")
    elif isinstance(o, MoveConfig | CopyConfig):
        if not o.from_ or not o.to:
            raise ConfigError(key, "from and to are both required")
    elif isinstance(o, FieldListConfig | SetConfig):
        if not o.fields:
            raise ConfigError(f"{key}.fields", "required")
    elif isinstance(o, FlattenConfig) and not o.field:
        raise ConfigError(f"{key}.field", "required")
