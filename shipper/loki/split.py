"""Cutting a batch into push requests: one per tenant, and halves after a 413."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shipper.loki.answers import Outcome, PushResult
from shipper.model import Entry

Streams = dict[str, list[Entry]]


def halves(streams: Mapping[str, Sequence[Entry]]) -> tuple[Streams, Streams] | None:
    """The batch cut in two by entry count, each stream's order kept; None for one entry."""
    flat = [(labels, entry) for labels, entries in streams.items() for entry in entries]
    if len(flat) < 2:
        return None
    middle = len(flat) // 2
    return _grouped(flat[:middle]), _grouped(flat[middle:])


def _grouped(pairs: list[tuple[str, Entry]]) -> Streams:
    streams: Streams = {}
    for labels, entry in pairs:
        streams.setdefault(labels, []).append(entry)
    return streams


def by_tenant(streams: Mapping[str, Sequence[Entry]]) -> dict[str, Streams] | None:
    """The batch per tenant, keyed by label string as Loki reads it; None when every stream
    goes to loki.tenant_id (its keys are then label strings already)."""
    if all(not entries[0][2].tenant for entries in streams.values()):
        return None
    tenants: dict[str, Streams] = {}
    for entries in streams.values():
        stream = entries[0][2]  # a batch key is one tenant and one label set
        tenants.setdefault(stream.tenant, {})[stream.labels] = list(entries)
    return tenants


def combined(parts: list[PushResult]) -> PushResult:
    """The outcome of a batch sent in several requests, each settled."""
    dropped = sum(part.dropped for part in parts)
    return PushResult(Outcome.REJECTED if dropped else Outcome.DELIVERED,
                      parts[-1].status, sum(part.attempts for part in parts), dropped,
                      next((part.reason for part in parts if part.reason), ""))


def sizes(streams: Streams) -> tuple[int, int]:
    """Entries and line bytes, as the batcher counts them."""
    entries = [entry for part in streams.values() for entry in part]
    return len(entries), sum(len(entry[1]) for entry in entries)


