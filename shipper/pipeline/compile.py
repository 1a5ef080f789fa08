"""Compiling the pipeline: stage configs into stages once, and per stream the rules that apply,
with the pod's own annotations."""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shipper.config import ConfigError
from shipper.enrich import FileStreams
from shipper.metrics import Metrics
from shipper.pipeline import filters, level, multiline, parsers, rate, rewrite, routing
from shipper.pipeline.config import (
    MULTILINE_PRESETS,
    Condition,
    CopyConfig,
    FieldListConfig,
    FlattenConfig,
    JsonConfig,
    LabelsConfig,
    LevelConfig,
    LogfmtConfig,
    Match,
    MoveConfig,
    MultilineConfig,
    RateLimitConfig,
    RegexConfig,
    ReplaceConfig,
    Rule,
    SetConfig,
    StageConfig,
    TenantConfig,
    TimestampConfig,
    read_stage,
)
from shipper.pipeline.record import GroupStage, RecordStage, StageSpec, StreamInfo
from shipper.pipeline.runner import FilePipeline, Segment, StreamPipeline

log = logging.getLogger(__name__)

# Per-pod self-service, on Fluent Bit's fluentbit.io/parser model. Applied around the rules:
# multiline, parser and drop before them (they shape the lines the rules see), tenant after
# (the pod's own choice wins).
MULTILINE = "shipper.io/multiline"
PARSER = "shipper.io/parser"
DROP = "shipper.io/drop"
TENANT = "shipper.io/tenant"
ANNOTATIONS_BEFORE = (MULTILINE, PARSER, DROP)
ANNOTATIONS_AFTER = (TENANT,)
_ANNOTATIONS_MAX = 1024  # distinct annotation values whose compiled stage is remembered

# Which rules (by index) and which annotations (name, value) made a stream's stages.
StagesKey = tuple[tuple[int, ...], tuple[tuple[str, str], ...]]
_NO_STAGES: StagesKey = ((), ())


def _annotation_stage(name: str, value: str) -> dict[str, object]:
    """The stage an annotation asks for, as it would be written in the config."""
    value = value.strip()
    if name == MULTILINE:
        return {"multiline": {"preset": value} if value in MULTILINE_PRESETS
                else {"first_line": value}}
    if name == PARSER:
        if value not in ("json", "logfmt"):
            raise ConfigError(name, f"unknown parser {value!r} (json or logfmt)")
        return {value: {}}
    if name == DROP:
        return {"drop": {"line": value}}
    return {"tenant": {"value": value}}


@dataclass(frozen=True, slots=True)
class NamedSpec:
    """A compiled stage and where it was written (pipeline[0].stages[1] json), for messages."""

    name: str
    spec: StageSpec


@dataclass(frozen=True, slots=True)
class _Shared:
    """What specs share across streams: metrics for their counters, the clock for rates."""

    metrics: Metrics
    clock: Callable[[], float]


def compile_stage(stage: StageConfig, shared: _Shared) -> StageSpec:
    """A stage config, checked by read_stage, as the spec that builds it per stream."""
    o = stage.options
    spec: StageSpec
    if isinstance(o, MultilineConfig):
        spec = multiline.MultilineSpec(o)
    elif isinstance(o, JsonConfig):
        spec = parsers.JsonSpec(o)
    elif isinstance(o, LogfmtConfig):
        spec = parsers.LogfmtSpec(o)
    elif isinstance(o, RegexConfig):
        spec = parsers.RegexSpec(o)
    elif isinstance(o, TimestampConfig):
        spec = parsers.TimestampSpec(o)
    elif isinstance(o, LevelConfig):
        spec = level.LevelSpec(o)
    elif isinstance(o, Condition):
        spec = filters.DropSpec(o, keep=stage.type == "keep")
    elif isinstance(o, ReplaceConfig):
        spec = rewrite.ReplaceSpec(o)
    elif isinstance(o, LabelsConfig):
        spec = routing.LabelsSpec(o, shared.metrics)
    elif isinstance(o, TenantConfig):
        spec = routing.TenantSpec(o)
    elif isinstance(o, RateLimitConfig):
        spec = rate.RateLimitSpec(o, shared.clock)
    elif isinstance(o, SetConfig):
        spec = rewrite.SetSpec(o)
    elif isinstance(o, MoveConfig):
        spec = rewrite.MoveSpec(o)
    elif isinstance(o, CopyConfig):
        spec = rewrite.CopySpec(o)
    elif isinstance(o, FieldListConfig):
        spec = rewrite.RetainSpec(o) if stage.type == "retain" else rewrite.RemoveSpec(o)
    elif isinstance(o, FlattenConfig):
        spec = rewrite.FlattenSpec(o)
    else:  # read_stage admits nothing else
        raise TypeError(f"no stage for {stage.type!r}")
    if stage.when is not None:
        spec = filters.WhenSpec(stage.when, spec)
    return spec


class _Matcher:
    """A rule's match: selector values and pod labels against globs, compiled once."""

    def __init__(self, match: Match) -> None:
        def pattern(globs: tuple[str, ...]) -> re.Pattern[str]:
            return re.compile("|".join(fnmatch.translate(g) for g in globs))

        self._values = [(key, pattern(globs)) for key, globs in match.values]
        self._labels = [(key, pattern(globs)) for key, globs in match.labels]

    def __call__(self, values: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
        return (all(p.match(values.get(k, "")) for k, p in self._values)
                and all(k in pod_labels and p.match(pod_labels[k]) for k, p in self._labels))


class Pipeline:
    """The configured rules compiled once; for each file, the stages of each output stream."""

    def __init__(self, rules: tuple[Rule, ...], metrics: Metrics, *, annotations: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._shared = _Shared(metrics, clock)
        self._rules = [(_Matcher(rule.match), [NamedSpec(f"{s.key} {s.type}",
                                                         compile_stage(s, self._shared))
                                               for s in rule.stages]) for rule in rules]
        self._annotations = annotations  # honour the shipper.io/ pod annotations
        # (annotation, value): its stage, or why it is invalid
        self._by_annotation: dict[tuple[str, str], StageSpec | str] = {}
        self._reported: set[tuple[str, str, str, str]] = set()  # (ns, pod, annotation, value)

    @property
    def active(self) -> bool:
        """Whether any stream may get stages: else the tailer never asks."""
        return bool(self._rules) or self._annotations

    def for_file(self, streams: FileStreams, previous: FilePipeline | None
                 ) -> tuple[FilePipeline | None, list[StreamPipeline]]:
        """The file's pipeline for its current metadata, and the stream pipelines it retires
        (whose kept records the caller must flush). A stream whose stages are unchanged keeps
        its pipeline, open multiline groups included. None: no stage for either stream."""
        built = []
        retired = []
        for output, stream in (("stdout", streams.stdout), ("stderr", streams.stderr)):
            info = StreamInfo(stream, output, pod_labels=streams.pod_labels,
                              pod_annotations=streams.pod_annotations,
                              **{k: streams.values.get(k, "") for k in (
                                  "namespace", "pod", "container", "app", "workload", "node")})
            key, specs = self.select(info)
            old = None if previous is None else getattr(previous, output)
            if old is not None and old.key == key:
                old.retarget(info)
                built.append(old)
                continue
            if old is not None:
                retired.append(old)
            built.append(StreamPipeline(info, segments(s.spec.build(info) for s in specs), key))
        stdout, stderr = built
        if stdout.key == stderr.key == _NO_STAGES:
            return None, retired
        return FilePipeline(stdout, stderr), retired

    def select(self, info: StreamInfo) -> tuple[StagesKey, list[NamedSpec]]:
        """The stages of one stream, in order, and a key that is equal exactly when they are."""
        values = {"namespace": info.namespace, "pod": info.pod, "container": info.container,
                  "app": info.app, "workload": info.workload, "node": info.node,
                  "stream": info.output}
        rules = tuple(i for i, (matches, _) in enumerate(self._rules)
                      if matches(values, info.pod_labels))
        asked = [(name, value, spec) for name in (*ANNOTATIONS_BEFORE, *ANNOTATIONS_AFTER)
                 if self._annotations and (value := info.pod_annotations.get(name)) is not None
                 and (spec := self._annotation(info, name, value)) is not None]
        specs = [NamedSpec(f"annotation {name}", spec) for name, _, spec in asked
                 if name in ANNOTATIONS_BEFORE]
        for i in rules:
            specs += self._rules[i][1]
        specs += [NamedSpec(f"annotation {name}", spec) for name, _, spec in asked
                  if name in ANNOTATIONS_AFTER]
        return (rules, tuple((name, value) for name, value, _ in asked)), specs

    def _annotation(self, info: StreamInfo, name: str, value: str) -> StageSpec | None:
        """The stage a pod annotation asks for; a bad one is logged once per pod and ignored:
        it never stops the pod's logs."""
        key = (name, value)
        compiled = self._by_annotation.get(key)
        if compiled is None:
            try:
                compiled = compile_stage(read_stage(name, _annotation_stage(name, value)),
                                         self._shared)
            except ConfigError as exc:
                compiled = exc.reason
            if len(self._by_annotation) < _ANNOTATIONS_MAX:  # values are per pod: bounded
                self._by_annotation[key] = compiled
        if not isinstance(compiled, str):
            return compiled
        pod = (info.namespace, info.pod, name, value)
        if pod not in self._reported:
            if len(self._reported) < _ANNOTATIONS_MAX:
                self._reported.add(pod)
            self._shared.metrics.pipeline_bad_annotations.inc()
            log.warning("ignoring a bad pipeline annotation; the pod's logs ship without it",
                        extra={"pod": f"{info.namespace}/{info.pod}", "annotation": name,
                               "value": value, "error": compiled})
        return None


def segments(stages: Iterable[RecordStage | GroupStage]) -> list[Segment]:
    """Consecutive record stages run record by record; a group stage takes the whole list."""
    out: list[Segment] = []
    for stage in stages:
        if isinstance(stage, GroupStage):
            out.append(stage)
        elif out and isinstance(out[-1], list):
            out[-1].append(stage)
        else:
            out.append([stage])
    return out
