"""Shared values that flow between the stages: no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipper.kube.pod_path import PathMeta

# One log line on its way to Loki: (timestamp in ns since the epoch, the line as valid UTF-8,
# the stream it belongs to). A plain tuple because millions are made per minute on the hot path.
Entry = tuple[int, bytes, "Stream"]


@dataclass(frozen=True, slots=True)
class FileId:
    """A file's identity on disk: survives renames, unlike its path."""

    dev: int
    ino: int

    def __str__(self) -> str:
        return f"{self.dev}:{self.ino}"


@dataclass(frozen=True, slots=True)
class Stream:
    """Where an entry goes: a Loki stream (its rendered label set) plus the entry's structured
    metadata. Built once per (file, stdout/stderr) and shared by all of that file's entries."""

    labels: str  # rendered and escaped, e.g. '{app="api", namespace="shop"}'
    label_pairs: tuple[tuple[str, str], ...]  # the same labels as (name, value), sorted by name
    metadata: tuple[tuple[str, str], ...] = ()
    tenant: str = ""  # X-Scope-OrgID of its pushes; "": loki.tenant_id
    # The container whose log it is: its pod may opt out after the entries were read, and
    # that is checked again before they are sent.
    origin: PathMeta | None = field(default=None, compare=False)
    key: str = field(init=False, repr=False, compare=False)  # what batches group entries by

    def __post_init__(self) -> None:
        # One push request per tenant: streams of different tenants never share a key.
        object.__setattr__(self, "key", f"{self.tenant}\0{self.labels}" if self.tenant
                           else self.labels)


@dataclass(slots=True)
class Ticket:
    """The delivery receipt of one chunk of a file. Issued, held, released and sealed only by
    `Positions`: the file's position may pass `end` once the ticket is sealed and nothing holds
    it any more (its entries may be spread over several batches, or wait in a multiline group)."""

    file: FileId
    end: int  # file offset: every byte before it is in this or an earlier chunk
    holders: int = 0  # batches (and open multiline groups) holding its entries, not yet settled
    sealed: bool = False  # its reader placed every entry; holders can no longer appear

    @property
    def settled(self) -> bool:
        return self.sealed and self.holders == 0


@dataclass(slots=True)
class Chunk:
    """What a tailer hands to the batcher: the entries parsed from one read of one file."""

    ticket: Ticket
    entries: list[Entry] = field(default_factory=list)
    overhead: int = 0  # estimated encoded bytes per entry beyond its line (timestamp, metadata)
    key: str | None = None  # set when every entry goes to this one stream (the default)
    line_bytes: int = -1  # the entries' line bytes, when the parser counted them (-1: count)

    def __post_init__(self) -> None:
        if self.line_bytes < 0:  # 400 instructions a line: the parser's count is free
            self.line_bytes = sum(map(len, map(itemgetter(1), self.entries)))

    @property
    def size(self) -> int:
        """Estimated encoded bytes: what the memory bound and batch.max_bytes count."""
        return self.line_bytes + self.overhead * len(self.entries)
