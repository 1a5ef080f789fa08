"""Collector configs for converter tests: a filelog receiver on kubelet's files with the given
operators, the given processors, a loki exporter; converted, and its stages and findings."""

from __future__ import annotations

from typing import Any

import yaml

from shipper.convert.otelcol import Conversion, convert_otelcol
from shipper.metrics import Metrics
from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.compile import Pipeline, segments
from shipper.pipeline.config import read_pipeline
from shipper.pipeline.record import Env, Record, StreamInfo
from shipper.pipeline.runner import StreamPipeline

LOKI = {"loki": {"endpoint": "http://loki:3100/loki/api/v1/push"}}


def collector(operators: list[dict[str, Any]] | None = None, *,
              processors: dict[str, Any] | None = None, exporters: dict[str, Any] | None = None,
              receiver: dict[str, Any] | None = None, extensions: dict[str, Any] | None = None,
              container: bool = True) -> str:
    """`container`: the container operator first, as the Helm preset has it (the body is the
    message from then on)."""
    ops = ([{"type": "container"}] if container else []) + (operators or [])
    filelog = {"include": ["/var/log/pods/*/*/*.log"], "start_at": "beginning",
               "operators": ops, **(receiver or {})}
    exporters = exporters or LOKI
    doc: dict[str, Any] = {
        "receivers": {"filelog": filelog}, "processors": processors or {},
        "exporters": exporters, "extensions": extensions or {},
        "service": {"pipelines": {"logs": {"receivers": ["filelog"],
                                           "processors": list(processors or {}),
                                           "exporters": list(exporters)}}}}
    return yaml.safe_dump(doc, sort_keys=False)


def convert(operators: list[dict[str, Any]] | None = None, **kwargs: Any) -> Conversion:
    return convert_otelcol(collector(operators, **kwargs))


def stages(conversion: Conversion) -> list[dict[str, Any]]:
    pipeline = conversion.data.get("pipeline") or [{"stages": []}]
    result: list[dict[str, Any]] = pipeline[0]["stages"]
    return result


def unmapped(conversion: Conversion) -> dict[str, str]:
    """Path: reason, of what did not map."""
    return {f.path: f.reason for f in conversion.report.not_mapped}


def fatal(conversion: Conversion) -> set[str]:
    """The paths of what did not map and would change which lines are shipped."""
    return {f.path for f in conversion.report.not_mapped if f.changes_lines}


# -- running what was converted --------------------------------------------------------------

def behave(conversion: Conversion, lines: list[str],
           fields: dict[str, str] | None = None) -> list[Record]:
    """The converted pipeline, compiled as the agent compiles it, run over `lines` (one read,
    then everything flushed) as one stream of one file; `fields`: what each record holds
    before (an earlier parser's)."""
    pipeline = Pipeline(read_pipeline(conversion.data.get("pipeline")), Metrics(),
                        annotations=False)
    info = StreamInfo(Stream("{}", ()), "stdout", namespace="shop", pod="api-0",
                      container="api")
    key, specs = pipeline.select(info)
    stream = StreamPipeline(info, segments(s.spec.build(info) for s in specs), key)
    env = Env(0.0, 0)
    ticket = Ticket(FileId(1, 1), len("".join(lines)))
    records = [Record(i, line, ticket, dict(fields) if fields else None)
               for i, line in enumerate(lines)]
    return stream.run(records, env) + stream.flush(env, force=True)
