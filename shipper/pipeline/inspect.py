"""`shipper inspect`: a config's pipeline over a sample, showing each entry after each stage, so a
rule can be debugged without a cluster (Promtail's --inspect, for this agent)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from shipper.config import Config
from shipper.enrich import Enricher
from shipper.kube.pod_cache import PodCache
from shipper.kube.pod_path import PathMeta
from shipper.loki.dryrun import entry_json
from shipper.metrics import Metrics
from shipper.model import FileId, Stream, Ticket
from shipper.parse import FileParser
from shipper.pipeline.compile import Pipeline, segments
from shipper.pipeline.record import Env, Record, StreamInfo
from shipper.pipeline.runner import StreamPipeline, run_segment

_SHOWN = 160  # characters of a line shown per record


@dataclass(frozen=True, slots=True)
class Pod:
    """The pod the sample is taken to come from, as given on the command line."""

    namespace: str = "default"
    name: str = "sample-0"
    container: str = "app"
    node: str = "node"
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None


def _infos(config: Config, pod: Pod) -> tuple[StreamInfo, StreamInfo]:
    """Both output streams' metadata, resolved as the agent would from a pod cache holding
    the pod (so app, workload and the labels config apply as in production)."""
    cache = PodCache()
    uid = "00000000-0000-4000-8000-000000000000"
    cache.apply("ADDED", {"metadata": {"name": pod.name, "namespace": pod.namespace, "uid": uid,
                                       "labels": dict(pod.labels or {}),
                                       "annotations": dict(pod.annotations or {})},
                          "spec": {"nodeName": pod.node}})
    enricher = Enricher(config.labels, pod.node, cache)
    streams = enricher.streams(PathMeta(pod.namespace, pod.name, pod.container, uid), "sample")
    values = {k: streams.values.get(k, "") for k in
              ("namespace", "pod", "container", "app", "workload", "node")}

    def info(output: str, stream: Stream) -> StreamInfo:
        return StreamInfo(stream, output, pod_labels=streams.pod_labels,
                          pod_annotations=streams.pod_annotations, **values)

    return info("stdout", streams.stdout), info("stderr", streams.stderr)


def _show(record: Record) -> str:
    line = record.line if len(record.line) <= _SHOWN else record.line[:_SHOWN] + "..."
    parts = [time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.ts // 10**9))
             + f".{record.ts % 10**9:09d}Z", json.dumps(line, ensure_ascii=False)]
    if record.fields:
        parts.append("fields=" + json.dumps(record.fields, ensure_ascii=False))
    if record.labels:
        parts.append("labels=" + json.dumps(record.labels, ensure_ascii=False))
    if record.tenant is not None:
        parts.append(f"tenant={record.tenant}")
    return "  ".join(parts)


def inspect(config: Config, sample: bytes, pod: Pod, out: TextIO) -> int:
    """Run the sample (a container log file, CRI or Docker, or plain lines) through the
    pipeline its pod would get, printing the records after every stage and the entries as they
    would be shipped. Returns the number of entries shipped."""
    pipeline = Pipeline(config.pipeline, Metrics(), annotations=True)
    stdout, stderr = _infos(config, pod)
    parser = FileParser(config.inputs.max_line_bytes, stdout.stream, stderr.stream)
    data = sample if sample.endswith(b"\n") or not sample else sample + b"\n"
    entries, _ = parser.parse(data, 0)
    entries += parser.flush()
    ticket = Ticket(FileId(0, 0), len(data))
    shipped = 0
    for info in (stdout, stderr):
        records = [Record(ts, line.decode(), ticket) for ts, line, stream in entries
                   if stream is info.stream]
        if records:
            shipped += _trace(pipeline, info, records, out)
    return shipped


def _trace(pipeline: Pipeline, info: StreamInfo, records: list[Record], out: TextIO) -> int:
    key, specs = pipeline.select(info)
    print(f"== {info.namespace}/{info.pod} container {info.container}, {info.output}: "
          f"{len(records)} entries in, {len(specs)} stages", file=out)
    for i, named in enumerate(specs, 1):
        print(f"   {i}. {named.name}", file=out)
    for i, record in enumerate(records, 1):
        print(f"   #{i} {_show(record)}", file=out)
    env = Env(time.monotonic(), time.time_ns())
    for i, named in enumerate(specs, 1):
        dropped_before = sum(env.dropped.values())
        for segment in segments([named.spec.build(info)]):
            records = run_segment(segment, records, env)
            if not isinstance(segment, list):  # a group stage: the sample is all there is
                records += segment.flush(env, force=True)
        dropped = sum(env.dropped.values()) - dropped_before
        print(f"-- after {i}. {named.name}: {len(records)} entries"
              + (f", {dropped} dropped" if dropped else ""), file=out)
        for j, record in enumerate(records, 1):
            print(f"   #{j} {_show(record)}", file=out)
    final = StreamPipeline(info, [], key)
    print(f"== shipped ({len(records)}):", file=out)
    for record in records:
        print("   " + entry_json(final.entry(record)), file=out)
    return len(records)
