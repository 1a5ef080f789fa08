"""What a conversion could not map, or mapped with a difference: each named by its path in the
Collector config, with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Finding:
    path: str  # where in the Collector config: receivers.filelog.operators[3]
    reason: str
    unmapped: bool = True  # False: mapped, with a difference worth knowing
    # An unmapped construct that would change which lines are shipped (a filter, a router, an
    # operator that may drop): running the converted config would differ silently.
    changes_lines: bool = False
    # A shipper key that, set by a later --config file, settles what the Collector config
    # could not express (e.g. loki.basic_auth.password_file for an inline password).
    resolved_by: str = ""

    def line(self) -> str:
        suffix = " [changes which lines are shipped]" if self.changes_lines else ""
        hint = f" (set {self.resolved_by} in a second --config)" if self.resolved_by else ""
        return f"{self.path}: {self.reason}{hint}{suffix}"


class Unsupported(Exception):
    """Raised while converting one construct: it becomes an unmapped Finding."""

    def __init__(self, path: str, reason: str, *, changes_lines: bool = False,
                 resolved_by: str = "") -> None:
        super().__init__(f"{path}: {reason}")
        self.finding = Finding(path, reason, True, changes_lines, resolved_by)


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    mapped: int = 0  # constructs converted (for the summary line)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def unmapped(self, path: str, reason: str, *, changes_lines: bool = False,
                 resolved_by: str = "") -> None:
        self.add(Finding(path, reason, True, changes_lines, resolved_by))

    def differs(self, path: str, reason: str) -> None:
        self.add(Finding(path, reason, unmapped=False))

    @property
    def not_mapped(self) -> list[Finding]:
        return [f for f in self.findings if f.unmapped]

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if not f.unmapped]

    def render(self, name: str) -> str:
        """The report printed on stderr by `shipper convert`."""
        lines = [f"{name}: {self.mapped} constructs mapped, {len(self.not_mapped)} not mapped, "
                 f"{len(self.differences)} mapped with a difference"]
        for title, findings in (("not mapped:", self.not_mapped),
                                ("mapped with a difference:", self.differences)):
            if findings:
                lines.append(title)
                lines += [f"  {f.line()}" for f in findings]
        return "\n".join(lines) + "\n"
