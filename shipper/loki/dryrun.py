"""Push stage of a dry run (no loki.url): each entry printed as one JSON object per line."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TextIO

from shipper.loki.answers import Outcome, PushResult
from shipper.model import Entry


def entry_json(entry: Entry) -> str:
    """One entry as the dry run prints it: what Loki would store, and for which tenant."""
    ts, line, stream = entry
    shown: dict[str, object] = {
        "labels": dict(stream.label_pairs),
        "structured_metadata": dict(stream.metadata),
        "timestamp_ns": ts,
        "line": line.decode("utf-8", "replace"),
    }
    if stream.tenant:
        shown["tenant"] = stream.tenant
    return json.dumps(shown, ensure_ascii=False)


class StdoutPusher:
    """Prints what LokiPusher would send, stream by stream in timestamp order."""

    failing_since: float | None = None  # writing never fails in a way a retry would fix
    misconfigured: str | None = None

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout

    async def push(self, streams: Mapping[str, Sequence[Entry]], entries: int,
                   line_bytes: int) -> PushResult:
        write = self._out.write
        for batch in streams.values():
            for entry in sorted(batch, key=itemgetter(0)):
                write(entry_json(entry) + "\n")
        self._out.flush()
        return PushResult(Outcome.DELIVERED, None, 1, 0)

    async def aclose(self) -> None:
        """Nothing to release: the stream belongs to the caller."""


__all__ = ["StdoutPusher", "entry_json"]
