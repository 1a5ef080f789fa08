"""The agent's Prometheus metrics, in a registry it owns (no global default registry)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from shipper import __version__

# What exposition() writes: the classic text format. prometheus-client's CONTENT_TYPE_LATEST says
# version=1.0.0 since 0.22 (UTF-8 names), which its own server only sends when negotiated.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (path, bytes) per open file, read at each scrape.
PerFile = Callable[[], Iterable[tuple[str, int]]]


class Metrics:
    """Every metric the agent exports. Named on Promtail's model so existing alerts port.

    Cardinality is bounded: hot counters carry no per-line, per-file or per-pod label; only the
    per-file size/acknowledged gauges carry `path`, and they go with the file (PerFileGauges)."""

    def __init__(self, node: str = "") -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        # process_cpu_seconds_total, process_resident_memory_bytes...: the budget's evidence.
        ProcessCollector(registry=r)
        self.read_bytes = Counter("shipper_read_bytes", "Bytes read from log files.", registry=r)
        self.read_lines = Counter("shipper_read_lines", "Raw lines read from log files.",
                                  registry=r)
        self.per_file = PerFileGauges()  # shipper_file_bytes, shipper_file_acked_bytes
        r.register(self.per_file)
        self.files_active = Gauge("shipper_files_active", "Files open for reading.", registry=r)
        self.file_errors = Counter("shipper_file_errors", "Files that could not be read.",
                                   ["reason"], registry=r)
        self.rotated_abandoned = Counter(
            "shipper_rotated_files_abandoned",
            "Rotated files closed before being read to the end (max_rotated_files exceeded).",
            registry=r)
        self.lines_unparsable = Counter(
            "shipper_lines_unparsable", "Lines neither CRI nor Docker json: shipped unchanged.",
            registry=r)
        self.lines_truncated = Counter(
            "shipper_lines_truncated", "Lines cut to inputs.max_line_bytes.", registry=r)
        self.lines_invalid_utf8 = Counter(
            "shipper_lines_invalid_utf8", "Lines whose invalid UTF-8 was replaced.", registry=r)
        self.partial_bytes_discarded = Counter(
            "shipper_partial_bytes_discarded",
            "Bytes of partial lines' later parts, dropped once their head reached "
            "inputs.max_line_bytes and was shipped.", registry=r)
        self.entries_excluded = Counter(
            "shipper_entries_excluded", "Entries of pods or containers opted out by annotation.",
            registry=r)
        self.entries_without_metadata = Counter(
            "shipper_entries_without_metadata",
            "Entries shipped with path-derived labels only: their pod was not (yet) known.",
            registry=r)
        self.sent_entries = Counter("shipper_sent_entries", "Entries acknowledged by Loki.",
                                    registry=r)
        self.sent_bytes = Counter("shipper_sent_bytes", "Line bytes acknowledged by Loki.",
                                  registry=r)
        self.dropped_entries = Counter(
            "shipper_dropped_entries", "Entries dropped on purpose: rejected by Loki for good, "
            "or by a pipeline stage (pipeline_drop, rate_limited, multiline_overflow).",
            ["reason"], registry=r)
        self.dropped_bytes = Counter(
            "shipper_dropped_bytes", "Line bytes Loki rejected permanently.", ["reason"],
            registry=r)
        self.pipeline_failures = Counter(
            "shipper_pipeline_failures", "Entries a pipeline stage could not process (e.g. not "
            "JSON for a json stage): shipped as they were.", ["stage"], registry=r)
        self.pipeline_label_overflow = Counter(
            "shipper_pipeline_label_overflow", "Values not promoted to a stream label because "
            "the label reached its max_values: shipped as structured metadata.", ["label"],
            registry=r)
        self.pipeline_bad_annotations = Counter(
            "shipper_pipeline_bad_annotations", "Pods whose shipper.io/ pipeline annotation was "
            "invalid and ignored.", registry=r)
        self.batch_retries = Counter("shipper_batch_retries", "Push attempts retried.",
                                     registry=r)
        self.request_duration = Histogram(
            "shipper_request_duration_seconds", "Push request duration by HTTP status code "
            "('error' for transport failures).", ["status_code"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.pending_bytes = Gauge(
            "shipper_pending_bytes", "Bytes read and held in memory until Loki acknowledges them.",
            registry=r)
        self.positions_write_errors = Counter(
            "shipper_positions_write_errors", "Failed writes of the positions file.", registry=r)
        self.task_failures = Counter(
            "shipper_task_failures",
            "Long-running tasks ended by an unexpected exception (each logged with its "
            "traceback, then restarted or given up), and requests the HTTP server failed.",
            ["task"], registry=r)
        self.kube_pods = Gauge("shipper_kube_pods", "Pods in the metadata cache.", registry=r)
        self.kube_watch_restarts = Counter(
            "shipper_kube_watch_restarts", "Pod watch restarts by reason.", ["reason"],
            registry=r)
        # `node` lets dashboards name each scrape target by its node (join on instance), whatever
        # labels the Prometheus setup attaches; one series per process, so no cardinality cost.
        self.build_info = Gauge("shipper_build_info", "Always 1; labels say what runs where.",
                                ["version", "python_version", "node"], registry=r)
        self.build_info.labels(__version__, platform.python_version(), node).set(1)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, without the `_created` series."""
        return generate_latest(_WithoutCreated(self.registry))


def _none() -> Iterable[tuple[str, int]]:
    return ()


class PerFileGauges:
    """shipper_file_bytes and shipper_file_acked_bytes, read from the tailers and positions at
    each scrape: a file gone is gone from /metrics, never stale. Read, not kept: a labelled
    gauge child per file cost ~0.7 KiB (2,000 files: 2.6 MiB of the 64). One series per
    path: a rotated file shares its path with its successor, and the last pair given wins."""

    def __init__(self) -> None:
        self._sizes: PerFile = _none
        self._acked: PerFile = _none

    def read_from(self, sizes: PerFile, acked: PerFile) -> None:
        self._sizes = sizes
        self._acked = acked

    def describe(self) -> Iterator[Metric]:
        yield from self._families(_none, _none)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._sizes, self._acked)

    @staticmethod
    def _families(sizes: PerFile, acked: PerFile) -> Iterator[Metric]:
        for name, help_text, per_file in (
                ("shipper_file_bytes", "Size of each active file.", sizes),
                ("shipper_file_acked_bytes", "Offset up to which each active file is "
                 "acknowledged by Loki (lag = size - this).", acked)):
            family = GaugeMetricFamily(name, help_text, labels=["path"])
            for path, value in dict(per_file()).items():
                family.add_metric([path], value)
            yield family


class _WithoutCreated:
    """A view of a registry that leaves out OpenMetrics `_created` samples. In the text format
    prometheus_client turns each into one more gauge series per counter and histogram child:
    noise that Promtail's metrics do not have. Filtered here rather than through
    prometheus_client.disable_created_metrics(), which changes every registry in the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            kept = [s for s in family.samples if s.name != created]
            if len(kept) != len(family.samples):
                family = Metric(family.name, family.documentation, family.type, family.unit)
                family.samples = kept
            yield family
