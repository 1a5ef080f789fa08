"""Converting an OpenTelemetry Collector config that ships logs into a shipper config: the
filelog receiver and its operators, the processors in pipeline order, the exporter; then the
labels the Collector config meant, and the stages checked against shipper's own schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shipper.config import Config, ConfigError, LabelsConfig, parse_config
from shipper.convert.context import Ctx
from shipper.convert.exporters import convert_exporters, convert_service
from shipper.convert.filters import filter_processor
from shipper.convert.processors import batch, k8sattributes, memory_limiter, resource_or_attributes
from shipper.convert.receiver import convert_receivers, is_kubelet
from shipper.convert.report import Finding, Report
from shipper.convert.source import Collector, env_refs, read_collector
from shipper.convert.yamlout import render
from shipper.enrich import sanitize_label_name
from shipper.pipeline.config import read_stage

PROCESSORS = {"k8sattributes": k8sattributes, "resource": resource_or_attributes,
              "attributes": resource_or_attributes, "batch": batch,
              "memory_limiter": memory_limiter, "filter": filter_processor}
# Processors that add or rewrite attributes but never drop an entry
_PASSIVE = {"resourcedetection", "transform", "groupbyattrs", "redaction", "cumulativetodelta",
            "metricstransform", "schema", "sumologic", "k8s_tagger"}
_DROPPING_STAGES = ("drop", "keep", "multiline")


@dataclass(frozen=True, slots=True)
class Conversion:
    data: dict[str, Any]  # the shipper config, as its YAML would load
    text: str  # that YAML, with a comment on where each construct came from
    report: Report


def _processors(ctx: Ctx, collector: Collector) -> None:
    for comp in collector.processors:
        convert = PROCESSORS.get(comp.type)
        if convert is None:
            ctx.report.unmapped(comp.path, f"shipper has no {comp.type!r} processor",
                                changes_lines=comp.type not in _PASSIVE)
        else:
            ctx.attempt(convert, ctx, comp)


def _labels(ctx: Ctx) -> None:
    labels, out = ctx.labels, ctx.out
    stream = [s for s in labels.stream if s not in labels.removed]
    for source in stream:
        for origin in labels.stream[source]:
            out.comment(("labels", "stream"), origin)
    if stream:
        out.data.setdefault("labels", {})["stream"] = stream
        if "pod" in stream:
            out.comment(("labels", "stream"), "pod as a stream label makes a stream per pod "
                        "(Loki's default limit: 5000 per tenant); structured_metadata keeps it "
                        "queryable without that cost")
    elif labels.carried:
        ctx.report.differs("labels", "the Collector config promotes no Kubernetes metadata to "
                           "a label; shipper's default stream labels apply (namespace, "
                           "container, app)")
    indexed = stream or list(LabelsConfig().stream)
    metadata = [s for s in labels.carried if s not in indexed and s not in labels.removed]
    if labels.carried or stream:
        for source in metadata:
            for origin in labels.carried[source]:
                out.comment(("labels", "structured_metadata"), origin)
        out.data.setdefault("labels", {})["structured_metadata"] = metadata
    for key, table in (("pod_labels", labels.pod_labels),
                       ("pod_annotations", labels.pod_annotations)):
        if table:
            out.data.setdefault("labels", {})[key] = list(table)
            for origin in table.values():
                out.comment(("labels", key), origin)
    if ctx.hint_fields:
        ctx.stage("labels", {"fields": {sanitize_label_name(f): f for f in ctx.hint_fields}},
                  ", ".join(dict.fromkeys(ctx.hint_fields.values())) + " (label hints)")
    if ctx.tenant is not None:
        ctx.stage("tenant", ctx.tenant[0], f"{ctx.tenant[1]} (loki.tenant hint)")


def _pipeline(ctx: Ctx) -> None:
    """The stages, each checked by the pipeline schema: one shipper would refuse is reported
    instead of written."""
    stages: list[dict[str, object]] = []
    for stage in ctx.stages:
        raw: dict[str, object] = {stage.kind: stage.options}
        if stage.when is not None:
            raw["when"] = stage.when
        path = stage.origin.split(" ", 1)[0].rstrip(":,")
        try:
            read_stage(f"pipeline[0].stages[{len(stages)}]", raw)
        except ConfigError as exc:
            ctx.report.unmapped(path, f"the converted {stage.kind} stage is refused: "
                                f"{exc.reason}", changes_lines=stage.kind in _DROPPING_STAGES)
            continue
        ctx.out.comment(("pipeline", 0, "stages", len(stages)), stage.origin)
        stages.append(raw)
    if stages:
        ctx.out.data["pipeline"] = [{"name": "otelcol", "stages": stages}]


def _origin(ctx: Ctx, key: tuple[str | int, ...]) -> str:
    """The Collector path a shipper key came from (its comment), else the key itself."""
    origins = [ctx.out.comments.get(key[:n]) for n in range(len(key), 0, -1)]
    origin = next((o[0] for o in origins if o), ".".join(map(str, key)))
    return origin.split(" ", 1)[0].rstrip(":,")


def _validate(ctx: Ctx) -> None:
    """The converted sections read by shipper's own config loader: a value it refuses (a size
    of 0, a URL without /push) is reported at its origin and left out."""
    for _ in range(32):  # each round removes one refused key
        sections = {k: v for k, v in ctx.out.data.items() if k != "pipeline"}
        try:
            parse_config(yaml.safe_dump(sections), env={})
            return
        except ConfigError as exc:
            parts = exc.key.split(".")
            while parts and ctx.out.get(".".join(parts)) is None:
                parts.pop()
            if not parts:
                raise  # a default shipper refuses: a bug here, not in the Collector config
            key = ".".join(parts)
            ctx.report.unmapped(_origin(ctx, tuple(parts)), f"{exc.reason} (as {key})",
                                changes_lines=key in ("inputs.paths", "loki.url"),
                                resolved_by=key)
            parent = ctx.out.get(".".join(parts[:-1])) if len(parts) > 1 else ctx.out.data
            del parent[parts[-1]]


def _unexpanded(ctx: Ctx, value: object, key: tuple[str | int, ...]) -> None:
    """A ${env:VAR} left in a value: shipper reads no variables in its config."""
    if isinstance(value, dict):
        for name, child in list(value.items()):
            _unexpanded(ctx, child, (*key, name))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _unexpanded(ctx, child, (*key, i))
    elif isinstance(value, str) and env_refs(value):
        ctx.report.unmapped(_origin(ctx, key), f"{value}: shipper reads no environment "
                            "variables here; give the value in a second --config",
                            resolved_by=".".join(str(k) for k in key if isinstance(k, str)))


def _settled_by_pipeline(report: Report, collector: Collector) -> None:
    """A stage that could not be converted is settled by rules a later --config gives: they
    replace the converted ones whole."""
    staged = (*tuple(f"{r.path}.operators" for r in collector.receivers), "processors.")
    report.findings = [
        Finding(f.path, f.reason, f.unmapped, f.changes_lines, "pipeline")
        if f.unmapped and f.changes_lines and not f.resolved_by and f.path.startswith(staged)
        else f for f in report.findings]


def convert_otelcol(text: str, env: Mapping[str, str] | None = None,
                    name: str = "the Collector config") -> Conversion:
    """`env`: the environment to expand ${env:VAR} with, as the Collector does at start (run,
    check-config); None keeps references, reporting how to give them to shipper (convert).
    Raises NotCollector when `text` is not a Collector config with a logs pipeline."""
    collector = read_collector(text, env)
    filelog = next((r for r in collector.receivers if r.type == "filelog"), None)
    ctx = Ctx(env, kubelet=filelog is not None and is_kubelet(filelog))
    for finding in collector.findings:
        ctx.report.add(finding)
    convert_receivers(ctx, collector)
    _processors(ctx, collector)
    convert_exporters(ctx, collector)
    convert_service(ctx, collector)
    _labels(ctx)
    _pipeline(ctx)
    _unexpanded(ctx, ctx.out.data, ())
    _validate(ctx)
    report = ctx.report
    _settled_by_pipeline(report, collector)
    ctx.out.header = [f"shipper config converted from {name} by `shipper convert otelcol`: "
                      f"{report.mapped} constructs mapped, {len(report.not_mapped)} not mapped "
                      "(see the report on stderr)."]
    if ctx.native:
        ctx.out.header += ["", "Done by shipper itself, nothing to configure:",
                           *(f"  {line}" for line in ctx.native)]
    order = tuple(f.name for f in dataclasses.fields(Config))  # pipeline: last
    return Conversion(ctx.out.data, render(ctx.out, order), report)
