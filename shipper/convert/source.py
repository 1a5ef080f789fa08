"""Reading a Collector config: is it one, which logs pipeline it runs, the components that
pipeline names, values read by type with their paths, and ${env:VAR} references."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from shipper.convert.report import Finding, Unsupported

COLLECTOR_KEYS = ("receivers", "exporters", "service")
_ENV_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_]\w*)(?::-([^}]*))?\}|\$([A-Za-z_]\w*)")


class NotCollector(ValueError):
    """The input is not a Collector config that ships logs: exit 2, with the reason."""


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # as the pipeline names it: filelog/k8s
    path: str  # where it is defined: receivers.filelog/k8s
    config: dict[str, object]

    @property
    def type(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass(slots=True)
class Collector:
    raw: dict[str, object]
    pipeline: str  # service.pipelines.logs, or "(inferred)"
    receivers: list[Component] = field(default_factory=list)
    processors: list[Component] = field(default_factory=list)
    exporters: list[Component] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # what reading it found


# -- typed reading: every mismatch names its path ----------------------------------------------

def as_map(value: object, path: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Unsupported(path, f"expected a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}


def as_list(value: object, path: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Unsupported(path, f"expected a list, got {value!r}")
    return value


def as_str(value: object, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Unsupported(path, f"expected a string, got {value!r}")


def as_strs(value: object, path: str) -> list[str]:
    """A list of strings; a single string is a list of one (as the Collector's decoder reads)."""
    if isinstance(value, str):
        return [value]
    return [as_str(v, f"{path}[{i}]") for i, v in enumerate(as_list(value, path))]


def as_bool(value: object, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Unsupported(path, f"expected true or false, got {value!r}")


# -- environment references ----------------------------------------------------------------

def env_refs(text: str) -> list[str]:
    return [m.group(1) or m.group(3) for m in _ENV_REF.finditer(text) if m.group() != "$$"]


def expand_env(value: object, env: Mapping[str, str]) -> object:
    """What the Collector does at load: ${env:VAR}, ${VAR}, $VAR and ${env:VAR:-default}
    replaced everywhere; a variable not set (and without default) is left as written."""
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$$"
        name = m.group(1) or m.group(3)
        if name in env:
            return env[name]
        return m.group(2) if m.group(2) is not None else m.group()

    return _ENV_REF.sub(one, value)


# -- the logs pipeline ------------------------------------------------------------------------

def _load(text: str) -> dict[str, object]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise NotCollector(f"not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, or a value YAML cannot hold
        raise NotCollector(f"not valid YAML: {exc}") from None
    if isinstance(raw, dict) and raw.get("kind") == "ConfigMap" and isinstance(
            raw.get("data"), dict):
        keys = ", ".join(map(str, raw["data"])) or "none"
        raise NotCollector("a Kubernetes ConfigMap, not the Collector config it holds: pass "
                           f"the value of its data key ({keys}) as the file")
    if not isinstance(raw, dict) or not any(k in raw for k in COLLECTOR_KEYS):
        got = "a mapping without them" if isinstance(raw, dict) else type(raw).__name__
        raise NotCollector("not an OpenTelemetry Collector config: expected top-level "
                           f"receivers, exporters and service, got {got}")
    return {str(k): v for k, v in raw.items()}


def _components(raw: dict[str, object], kind: str, names: list[str], pipeline: str,
                findings: list[Finding]) -> list[Component]:
    try:
        defined = as_map(raw.get(kind), kind)
    except Unsupported as exc:
        findings.append(exc.finding)
        defined = {}
    found = []
    for i, name in enumerate(names):
        if name not in defined:
            findings.append(Finding(f"{pipeline}.{kind}[{i}]", f"{name!r} is not defined "
                                    f"under {kind}: the Collector would refuse this config"))
            continue
        try:
            found.append(Component(name, f"{kind}.{name}", as_map(defined[name],
                                                                  f"{kind}.{name}")))
        except Unsupported as exc:
            findings.append(exc.finding)
    return found


def read_collector(text: str, env: Mapping[str, str] | None = None) -> Collector:
    raw = _load(text)
    if env is not None:
        raw = expand_env(raw, env)  # type: ignore[assignment]  # a dict stays a dict
    try:
        return _read(raw)
    except Unsupported as exc:  # the pipeline itself is malformed: nothing to convert
        raise NotCollector(exc.finding.line()) from None


def _read(raw: dict[str, object]) -> Collector:
    findings: list[Finding] = []
    service = as_map(raw.get("service"), "service")
    pipelines = as_map(service.get("pipelines"), "service.pipelines")
    logs = [name for name in pipelines if name == "logs" or name.startswith("logs/")]
    if not logs and "service" in raw:
        others = ", ".join(pipelines) or "none"
        raise NotCollector(f"no logs pipeline (service.pipelines has {others}): this Collector "
                           "config ships no logs")
    if not logs:  # no service at all: the Collector would refuse; read what it evidently means
        names = {kind: list(as_map(raw.get(kind), kind)) for kind in
                 ("receivers", "processors", "exporters")}
        if not names["receivers"] or not names["exporters"]:
            raise NotCollector("no service.pipelines, and no receivers and exporters to infer "
                               "a logs pipeline from")
        findings.append(Finding("service", "missing: the Collector would refuse this config; "
                                "read as one logs pipeline of every receiver, processor (in the "
                                "order written) and exporter", unmapped=False))
        pipeline, spec = "service.pipelines.logs", {k: v for k, v in names.items()}
    else:
        pipeline = f"service.pipelines.{logs[0]}"
        spec = {kind: as_strs(as_map(pipelines[logs[0]], pipeline).get(kind),
                              f"{pipeline}.{kind}")
                for kind in ("receivers", "processors", "exporters")}
        for other in logs[1:]:
            findings.append(Finding(f"service.pipelines.{other}", "a second logs pipeline: "
                                    f"shipper runs one; only {pipeline} was converted"))
    collector = Collector(raw, pipeline, findings=findings)
    collector.receivers = _components(raw, "receivers", spec["receivers"], pipeline, findings)
    collector.processors = _components(raw, "processors", spec["processors"], pipeline, findings)
    collector.exporters = _components(raw, "exporters", spec["exporters"], pipeline, findings)
    return collector


def extension(collector: Collector, name: str, path: str) -> Component:
    """An extension named by a component (an authenticator, a storage)."""
    defined = as_map(collector.raw.get("extensions"), "extensions")
    if name not in defined:
        raise Unsupported(path, f"names the extension {name!r}, which is not defined")
    return Component(name, f"extensions.{name}", as_map(defined[name], f"extensions.{name}"))
