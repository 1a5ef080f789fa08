"""The --config files: shipper configs, and OpenTelemetry Collector configs converted in memory,
merged in order, each over the ones before it key by key.

Mappings merge; lists and scalars are replaced whole, so a later file's `pipeline:` replaces
the earlier list of rules (and with it the stages converted from a Collector config)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from shipper.config import Config, ConfigError, parse_config
from shipper.convert.report import Finding
from shipper.convert.source import COLLECTOR_KEYS


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    # A line per Collector config (to log) with its count of constructs not mapped
    converted: list[tuple[str, int]] = field(default_factory=list)


def merge(base: dict[str, object], over: Mapping[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, dict):
            out[key] = merge(below, value)
        else:
            out[key] = value
    return out


def _keys(raw: Mapping[str, object], prefix: str = "") -> set[str]:
    """Every dotted key a file sets: loki, loki.basic_auth, loki.basic_auth.password_file."""
    keys = set()
    for name, value in raw.items():
        key = f"{prefix}{name}"
        keys.add(key)
        if isinstance(value, Mapping):
            keys |= _keys(value, f"{key}.")
    return keys


def _read(path: str) -> tuple[str, object]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError("--config", f"cannot read {path}: {reason}") from None
    try:
        return text, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {exc}") from None


def _convert(path: str, text: str, env: Mapping[str, str]) -> tuple[dict[str, object],
                                                                      list[Finding], str]:
    from shipper.convert.otelcol import convert_otelcol
    from shipper.convert.source import NotCollector

    try:
        conversion = convert_otelcol(text, env, name=path)
    except NotCollector as exc:
        raise ConfigError(path, str(exc)) from None
    report = conversion.report
    note = (f"{path}: an OpenTelemetry Collector config, converted in memory: {report.mapped} "
            f"constructs mapped, {len(report.not_mapped)} not mapped"
            + (f" ({', '.join(f.path for f in report.not_mapped)}; `shipper convert otelcol "
               f"{path}` prints the report)" if report.not_mapped else ""))
    return conversion.data, report.not_mapped, note


def load_configs(paths: Sequence[str], env: Mapping[str, str] | None = None) -> Loaded:
    """The config the files give together (none: the defaults). A construct of a Collector
    config that could not be converted and would change which lines are shipped stops the
    start, unless a later file sets the key that settles it."""
    env = os.environ if env is None else env
    merged: dict[str, object] = {}
    pending: list[tuple[str, Finding]] = []
    converted = []
    for path in paths:
        text, raw = _read(path)
        if isinstance(raw, dict) and any(k in raw for k in COLLECTOR_KEYS):
            raw, unmapped, note = _convert(path, text, env)
            pending += [(path, f) for f in unmapped]
            converted.append((note, len(unmapped)))
        elif raw is not None and not isinstance(raw, dict):
            raise ConfigError(path, f"expected a mapping of config sections, got {raw!r}")
        elif raw:
            given = _keys(raw)
            pending = [(p, f) for p, f in pending if f.resolved_by not in given]
        merged = merge(merged, raw or {})
    for path, finding in pending:
        if finding.changes_lines:
            raise ConfigError(finding.path, f"{finding.reason}: running {path} as converted "
                              "would change which lines are shipped"
                              + (f"; set {finding.resolved_by} in a later --config file, or"
                                 if finding.resolved_by else ";")
                              + f" convert it with `shipper convert otelcol {path}` and edit")
    return Loaded(parse_config(yaml.safe_dump(merged, sort_keys=False), env), converted)
