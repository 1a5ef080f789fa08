"""What converting one Collector config accumulates: the output, the report, the scope of the
operator chain, the stages, and which Kubernetes metadata ends up as labels or metadata."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shipper.convert.fields import Scope
from shipper.convert.report import Report, Unsupported
from shipper.convert.yamlout import Out

Condition = dict[str, object]


@dataclass(slots=True)
class Stage:
    kind: str  # a shipper stage type: json, regex, move...
    options: dict[str, object]
    origin: str  # the Collector path it came from, with a word on what
    when: Condition | None = None


@dataclass(slots=True)
class Labels:
    """Kubernetes metadata by shipper source, each with the Collector paths that put it there."""

    stream: dict[str, list[str]] = field(default_factory=dict)  # as Loki stream labels
    carried: dict[str, list[str]] = field(default_factory=dict)  # attached: structured metadata
    removed: dict[str, list[str]] = field(default_factory=dict)  # removed again before export
    pod_labels: dict[str, str] = field(default_factory=dict)  # label key: origin
    pod_annotations: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def add(table: dict[str, list[str]], source: str, origin: str) -> None:
        origins = table.setdefault(source, [])
        if origin not in origins:
            origins.append(origin)


class Ctx:
    def __init__(self, env: Mapping[str, str] | None, kubelet: bool) -> None:
        self.env = env  # run: the process environment (already expanded); convert: None
        self.out = Out()
        self.report = Report()
        self.scope = Scope(kubelet=kubelet, raw=kubelet)
        self.stages: list[Stage] = []
        self.native: list[str] = []  # constructs shipper does by itself, for the header
        self.labels = Labels()
        self.envelope_ops: set[str] = set()  # operators a format router sends raw lines to
        self.hint_fields: dict[str, str] = {}  # fields the Loki exporter was told to label
        # k8sattributes' tag names for pod labels and annotations: the source one stands for
        # ("app"), or "" for a pod label or annotation copied as it is
        self.tags: dict[str, str] = {}
        self.tenant: tuple[dict[str, object], str] | None = None  # a loki.tenant hint

    def stage(self, kind: str, options: dict[str, object], origin: str,
              when: Condition | None = None) -> None:
        self.stages.append(Stage(kind, options, origin, when))

    def check_levels(self, condition: Condition, where: str) -> None:
        """A severity test needs a severity: where nothing parsed one, every entry's is
        UNSPECIFIED to the Collector, while shipper would detect a level from the line."""
        if "'level'" in repr(condition) and not any(s.kind == "level" for s in self.stages):
            raise Unsupported(where, "tests the severity, but no operator before it parses "
                              "one: the Collector sees every entry as UNSPECIFIED here, shipper "
                              "would detect levels from the lines", changes_lines=True)

    def done_natively(self, origin: str, what: str) -> None:
        self.native.append(f"{origin}: {what}")

    def attempt(self, action: Callable[..., object], *args: object) -> bool:
        """Run one construct's conversion; what it cannot map is reported, not raised."""
        try:
            action(*args)
        except Unsupported as exc:
            self.report.add(exc.finding)
            return False
        self.report.mapped += 1
        return True
