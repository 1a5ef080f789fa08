"""What flows through the pipeline's stages, and the seams every stage implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shipper.model import Stream, Ticket


@dataclass(slots=True)
class Record:
    """One entry on its way through a stream's stages. Stages change it in place."""

    ts: int  # ns since the epoch
    line: str
    ticket: Ticket  # the read it came from: a multiline group keeps its first line's
    fields: dict[str, str] | None = None  # extracted values: shipped as structured metadata
    labels: dict[str, str] | None = None  # promoted to stream labels
    tenant: str | None = None  # X-Scope-OrgID; None: the stream's

    def field(self, name: str) -> str | None:
        return None if self.fields is None else self.fields.get(name)

    def set_field(self, name: str, value: str) -> None:
        if self.fields is None:
            self.fields = {name: value}
        else:
            self.fields[name] = value


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What is known of one output stream of one container, for matching and routing."""

    stream: Stream  # where its records go unless a stage says otherwise
    output: str  # stdout or stderr
    namespace: str = ""
    pod: str = ""
    container: str = ""
    app: str = ""
    workload: str = ""
    node: str = ""
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Env:
    """What a run of the stages shares: the time, and what stages report back."""

    now: float  # monotonic seconds: multiline's max_wait counts in it
    now_ns: int  # wall clock, ns since the epoch: drop's older_than compares entries with it
    delay: float = 0.0  # seconds the reader must wait before handing records on (rate_limit hold)
    dropped: dict[str, int] = field(default_factory=dict)  # reason: records dropped on purpose
    failed: dict[str, int] = field(default_factory=dict)  # stage type: records it left as they
    # were because it could not process them (a line that is not JSON for a json stage...)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def fail(self, stage: str) -> None:
        self.failed[stage] = self.failed.get(stage, 0) + 1


class RecordStage(Protocol):
    """A stage that looks at one record at a time and keeps no records back."""

    reason: str  # the drop reason counted when apply() returns False

    def apply(self, record: Record, env: Env) -> bool:
        """Process `record` in place; False drops it."""
        ...


@runtime_checkable  # tells a built stage's kind once per stream, never per line
class GroupStage(Protocol):
    """A stage that may keep records back across reads (multiline). One instance per stream."""

    def run(self, records: list[Record], env: Env) -> list[Record]:
        """The records ready to go on, in order; the rest are kept."""
        ...

    def flush(self, env: Env, force: bool) -> list[Record]:
        """What is kept and due (past max_wait), or everything kept if `force`."""
        ...

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which flush() has something due, if anything is kept."""
        ...

    @property
    def held(self) -> Ticket | None:
        """The ticket of the earliest record kept back: its read must not be committed."""
        ...


class StageSpec(Protocol):
    """A stage compiled from its config once (regexes and all), built per stream."""

    def build(self, info: StreamInfo) -> RecordStage | GroupStage:
        """The stage for one stream: shared when it keeps no per-stream state."""
        ...
