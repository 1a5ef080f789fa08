"""The filelog operators as the graph they are (each sends to `output`, else to the next; a
router to its routes), and under which route choices each operator is reached: what becomes
the `when:` of its stages in shipper's straight list."""

from __future__ import annotations

from dataclasses import dataclass, field

from shipper.convert.report import Finding
from shipper.convert.source import as_list, as_map, as_str, as_strs

END = ""  # out of the operators: emitted by the receiver
Choice = tuple[int, int]  # (router's index, branch: a route's index, or len(routes): default)
Alt = frozenset[Choice]  # one way to be reached: the route taken at each router on the way
Reach = frozenset[Alt]  # any of these ways; {frozenset()}: always; empty: never
ALWAYS: Reach = frozenset({frozenset()})


@dataclass(slots=True)
class Op:
    index: int
    id: str
    type: str
    config: dict[str, object]
    path: str  # receivers.filelog.operators[2]
    outputs: list[str] = field(default_factory=list)  # ids (END: leave the receiver)
    routes: list[tuple[str, list[str]]] = field(default_factory=list)  # router: expr, outputs
    default: list[str] | None = None  # router: where unmatched entries go (None: dropped)

    @property
    def label(self) -> str:
        return f"{self.path} ({self.type})"

    def branches(self) -> list[list[str]]:
        if self.type != "router":
            return [self.outputs]
        return [outs for _, outs in self.routes] + ([self.default] if self.default else [])


def read_ops(raw: object, path: str, findings: list[Finding]) -> list[Op]:
    """The operators with their successors resolved; a malformed one is reported and skipped
    (an operator the Collector cannot even read changes what is shipped)."""
    ops: list[Op] = []
    for i, item in enumerate(as_list(raw, path)):
        where = f"{path}[{i}]"
        config = item if isinstance(item, dict) else None
        kind = config.get("type") if config else None
        if config is None or not isinstance(kind, str):
            findings.append(Finding(where, f"expected an operator with a type, got {item!r}",
                                    changes_lines=True))
            continue
        config = {str(k): v for k, v in config.items()}
        ops.append(Op(len(ops), str(config.get("id", kind)), kind, config, where))
    _deduplicate(ops)
    ids = {op.id: op.index for op in ops}
    for op in ops:
        following = [ops[op.index + 1].id] if op.index + 1 < len(ops) else [END]
        op.outputs = _targets(op.config.get("output"), f"{op.path}.output", ids, following,
                              findings)
        if op.type == "router":
            for j, route in enumerate(as_list(op.config.get("routes"), f"{op.path}.routes")):
                where = f"{op.path}.routes[{j}]"
                spec = as_map(route, where)
                op.routes.append((as_str(spec.get("expr"), f"{where}.expr"),
                                  _targets(spec.get("output"), f"{where}.output", ids, [],
                                           findings)))
            if op.config.get("default") is not None:
                op.default = _targets(op.config.get("default"), f"{op.path}.default", ids, [],
                                      findings)
    return ops


def _deduplicate(ops: list[Op]) -> None:
    """Operators left with the default id (their type) are renamed as stanza does: the first
    keeps it, the next become move1, move2..."""
    taken = {op.id for op in ops}
    seen: dict[str, int] = {}
    for op in ops:
        if op.id != op.type:
            continue
        count = seen.get(op.type, 0)
        seen[op.type] = count + 1
        if count == 0:
            continue
        while f"{op.type}{count}" in taken:
            count += 1
        op.id = f"{op.type}{count}"
        taken.add(op.id)
        seen[op.type] = count + 1


def _targets(raw: object, where: str, ids: dict[str, int], following: list[str],
             findings: list[Finding]) -> list[str]:
    if raw is None:
        return following
    targets = []
    for name in as_strs(raw, where):
        if name in ids:
            targets.append(name)
        else:
            findings.append(Finding(where, f"names no operator: {name!r}", changes_lines=True))
    return targets


def _simplify(reach: Reach, live: dict[int, int]) -> Reach:
    """Ways that together take every branch of a router collapse into one way without it."""
    alts = set(reach)
    changed = True
    while changed:
        changed = False
        alts = {a for a in alts if not any(b < a for b in alts)}
        for router, count in live.items():
            groups: dict[Alt, set[int]] = {}
            for alt in alts:
                for r, branch in alt:
                    if r == router:
                        groups.setdefault(alt - {(r, branch)}, set()).add(branch)
            for rest, branches in groups.items():
                if len(branches) >= count:
                    alts = {a for a in alts if not (a > rest and len(a - rest) == 1 and
                                                    next(iter(a - rest))[0] == router)}
                    alts.add(rest)
                    changed = True
    return frozenset(alts)


def reach(ops: list[Op], findings: list[Finding]) -> list[Reach]:
    """How each operator is reached. Entries no route takes are dropped by their router, so
    a merge of all of a router's routes is reached always."""
    index = {op.id: op.index for op in ops}
    live = {op.index: len(op.branches()) for op in ops if op.type == "router"}
    ways: list[Reach] = [ALWAYS if i == 0 else frozenset() for i in range(len(ops))]
    for op in ops:
        ways[op.index] = _simplify(ways[op.index], live)
        if not ways[op.index]:
            continue
        for branch, targets in enumerate(op.branches()):
            for target in targets:
                if target == END:
                    continue
                if index[target] <= op.index:
                    findings.append(Finding(f"{op.path}.output", f"sends back to {target!r}, an "
                                            "earlier operator: shipper's stages run once, in "
                                            "order", changes_lines=True))
                    continue
                step = ways[op.index] if op.type != "router" else frozenset(
                    alt | {(op.index, branch)} for alt in ways[op.index])
                ways[index[target]] = ways[index[target]] | step
    return ways
