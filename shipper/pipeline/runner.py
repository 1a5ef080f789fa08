"""Running the stages: per output stream of a file, over the entries of each read, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shipper.enrich import render_labels, sanitize_label_name
from shipper.model import Entry, Stream, Ticket
from shipper.pipeline.record import Env, GroupStage, Record, RecordStage, StreamInfo

Segment = list[RecordStage] | GroupStage  # consecutive record stages run record by record
_DERIVED_MAX = 4096  # distinct (fields, labels, tenant) streams remembered per stream


def run_segment(segment: Segment, records: list[Record], env: Env) -> list[Record]:
    """Records through one segment: record stages record by record, or one group stage."""
    if not isinstance(segment, list):
        return segment.run(records, env)
    kept = []
    for record in records:
        for stage in segment:
            if not stage.apply(record, env):
                env.drop(stage.reason)
                break
        else:
            kept.append(record)
    return kept


class StreamPipeline:
    """The stages of one output stream (stdout or stderr) of one file, with their state."""

    def __init__(self, info: StreamInfo, segments: Sequence[Segment], key: object) -> None:
        self.info = info
        self.key = key  # what it was built from: an equal key rebuilds the same stages
        self._segments = list(segments)
        self._groups = [s for s in self._segments if not isinstance(s, list)]
        self._derived: dict[tuple[object, ...], Stream] = {}

    def retarget(self, info: StreamInfo) -> None:
        """Same stages, new metadata (the pod cache changed): records go to its stream now."""
        if info.stream is not self.info.stream:
            self._derived.clear()
        self.info = info

    def run(self, records: list[Record], env: Env) -> list[Record]:
        return self._through(records, 0, env)

    def flush(self, env: Env, force: bool) -> list[Record]:
        """Records kept back that are due (all if `force`), through the stages after them."""
        out: list[Record] = []
        for i, segment in enumerate(self._segments):
            if not isinstance(segment, list):
                out += self._through(segment.flush(env, force), i + 1, env)
        return out

    def _through(self, records: list[Record], start: int, env: Env) -> list[Record]:
        for segment in self._segments[start:]:
            if not records:
                break
            records = run_segment(segment, records, env)
        return records

    @property
    def deadline(self) -> float | None:
        deadlines = [d for g in self._groups if (d := g.deadline) is not None]
        return min(deadlines) if deadlines else None

    def held(self) -> list[Ticket]:
        return [t for g in self._groups if (t := g.held) is not None]

    def entry(self, record: Record) -> Entry:
        """The record as the entry it ships as: its stream derived from the base one when a
        stage gave it fields, labels or a tenant."""
        base = self.info.stream
        if record.fields is None and record.labels is None and record.tenant is None:
            return record.ts, record.line.encode(), base
        key = (tuple(record.fields.items()) if record.fields else (),
               tuple(record.labels.items()) if record.labels else (), record.tenant)
        stream = self._derived.get(key)
        if stream is None:
            if len(self._derived) >= _DERIVED_MAX:
                self._derived.clear()
            stream = self._derived[key] = _derive(base, *key)
        return record.ts, record.line.encode(), stream


def _derive(base: Stream, fields: tuple[tuple[str, str], ...],
            labels: tuple[tuple[str, str], ...], tenant: str | None) -> Stream:
    label_pairs = base.label_pairs
    if labels:
        label_pairs = tuple(sorted({**dict(label_pairs), **dict(labels)}.items()))
    metadata = base.metadata
    if fields:
        extra = {sanitize_label_name(k): v for k, v in fields}
        metadata = tuple(sorted({**dict(metadata), **extra}.items()))
    return Stream(render_labels(label_pairs) if labels else base.labels, label_pairs, metadata,
                  base.tenant if tenant is None else tenant, base.origin)


@dataclass(slots=True)
class Output:
    """What a run hands on: entries by the ticket they are committed under (file order)."""

    placements: list[tuple[Ticket, list[Entry]]] = field(default_factory=list)

    def add(self, pipeline: StreamPipeline, records: list[Record]) -> None:
        """Records in file order: each run of one ticket is one placement (a group released
        from an earlier read comes before this read's records)."""
        entry = pipeline.entry
        start = 0
        for end in range(1, len(records) + 1):
            if end == len(records) or records[end].ticket is not records[start].ticket:
                self.placements.append(
                    (records[start].ticket, [entry(r) for r in records[start:end]]))
                start = end


class FilePipeline:
    """Both output streams of one file: splits a read's entries between them."""

    def __init__(self, stdout: StreamPipeline, stderr: StreamPipeline) -> None:
        self.stdout, self.stderr = stdout, stderr

    def run(self, entries: list[Entry], ticket: Ticket, env: Env) -> Output:
        stderr = self.stderr.info.stream
        out: list[Record] = []
        err: list[Record] = []
        for ts, line, stream in entries:  # the parser tagged each with its output's Stream
            (err if stream is stderr else out).append(Record(ts, line.decode(), ticket))
        output = Output()
        output.add(self.stdout, self.stdout.run(out, env))
        output.add(self.stderr, self.stderr.run(err, env))
        return output

    def flush(self, env: Env, force: bool) -> Output:
        output = Output()
        for pipeline in (self.stdout, self.stderr):
            output.add(pipeline, pipeline.flush(env, force))
        return output

    @property
    def deadline(self) -> float | None:
        deadlines = [d for p in (self.stdout, self.stderr) if (d := p.deadline) is not None]
        return min(deadlines) if deadlines else None

    def held(self) -> list[Ticket]:
        return self.stdout.held() + self.stderr.held()
