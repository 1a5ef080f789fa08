"""Processors: k8sattributes (which Kubernetes metadata is attached), resource and attributes
(set, copy, delete, and the Loki exporter's label hints), batch and memory_limiter."""

from __future__ import annotations

from shipper.config import LABEL_SOURCES
from shipper.convert.conditions import Condition
from shipper.convert.context import Ctx
from shipper.convert.fields import SOURCES, source_of
from shipper.convert.report import Unsupported
from shipper.convert.source import Component, as_list, as_map, as_str, as_strs, env_refs
from shipper.convert.units import duration, seconds

# What k8sattributes extracts when extract.metadata is not given (its README)
DEFAULT_METADATA = ("k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time",
                    "k8s.deployment.name", "k8s.node.name")
HINTS = ("loki.attribute.labels", "loki.resource.labels")


def k8sattributes(ctx: Ctx, comp: Component) -> None:
    extract = as_map(comp.config.get("extract"), f"{comp.path}.extract")
    where = f"{comp.path}.extract.metadata"
    names = as_strs(extract["metadata"], where) if "metadata" in extract else DEFAULT_METADATA
    origin = where if "metadata" in extract else f"{comp.path} (its default metadata)"
    missing = []
    for name in names:
        if name in SOURCES:
            ctx.labels.add(ctx.labels.carried, SOURCES[name], origin)
        else:
            missing.append(name)
    if missing:
        ctx.report.unmapped(where, f"{', '.join(missing)}: shipper has no such metadata (its "
                            f"sources: {', '.join(LABEL_SOURCES)})")
    for kind in ("labels", "annotations"):
        for i, spec in enumerate(as_list(extract.get(kind), f"{comp.path}.extract.{kind}")):
            ctx.attempt(_pod_key, ctx, comp, kind, i, spec)
    if extract.get("otel_annotations"):
        ctx.report.unmapped(f"{comp.path}.extract.otel_annotations", "shipper does not read "
                            "resource.opentelemetry.io/* annotations")
    _node(ctx, comp)
    ctx.done_natively(comp.path, "finds each entry's pod; shipper knows it from the file's "
                      "path and a node-scoped pod watch (pod_association is not needed)")


def _pod_key(ctx: Ctx, comp: Component, kind: str, i: int, spec: object) -> None:
    where = f"{comp.path}.extract.{kind}[{i}]"
    cfg = as_map(spec, where)
    if cfg.get("from", "pod") != "pod":
        raise Unsupported(where, f"from {cfg['from']}: shipper copies the pod's own {kind}")
    if cfg.get("key") is None:
        raise Unsupported(where, "key_regex: shipper copies named keys only")
    key = as_str(cfg["key"], f"{where}.key")
    tag = str(cfg.get("tag_name") or f"k8s.pod.{kind}.{key}")
    if kind == "labels" and key == "app.kubernetes.io/name":  # what shipper's app is first
        ctx.labels.add(ctx.labels.carried, "app", where)
        ctx.tags[tag] = "app"
        return
    table = ctx.labels.pod_labels if kind == "labels" else ctx.labels.pod_annotations
    table[key] = where
    ctx.tags[tag] = ""  # a pod label or annotation: structured metadata only
    if cfg.get("tag_name"):
        ctx.report.differs(f"{where}.tag_name", f"shipped as {key!r} (its name sanitised for "
                           f"Loki), not {cfg['tag_name']!r}")


def _node(ctx: Ctx, comp: Component) -> None:
    flt = as_map(comp.config.get("filter"), f"{comp.path}.filter")
    var = flt.get("node_from_env_var")
    node = flt.get("node")
    if var is not None and var != "NODE_NAME":
        value = ctx.env.get(str(var)) if ctx.env is not None else None
        if value:
            ctx.out.set("kubernetes.node_name", value, f"{comp.path}.filter.node_from_env_var")
        else:
            ctx.report.differs(f"{comp.path}.filter.node_from_env_var", f"shipper reads the "
                               f"node's name from NODE_NAME, not {var}: set NODE_NAME in the "
                               "DaemonSet (fieldRef spec.nodeName)")
    if isinstance(node, str):
        if env_refs(node):
            ctx.report.differs(f"{comp.path}.filter.node", f"{node}: shipper reads the node's "
                               "name from NODE_NAME: set it in the DaemonSet")
        else:
            ctx.out.set("kubernetes.node_name", node, f"{comp.path}.filter.node")


# -- resource and attributes processors ----------------------------------------------------

def _hint(ctx: Ctx, where: str, key: str, value: str) -> None:
    if key in HINTS:
        for name in (n.strip() for n in value.split(",") if n.strip()):
            source = source_of(name) or ctx.tags.get(name)
            if source:
                ctx.labels.add(ctx.labels.stream, source, where)
            elif name in ctx.tags:
                ctx.report.unmapped(where, f"{name}: a pod label or annotation; shipper ships "
                                    "them as structured metadata, never as stream labels")
            else:
                ctx.hint_fields[name] = where
    elif key == "loki.tenant":
        source = source_of(value)
        if source == "namespace":
            ctx.tenant = ({"namespace": True}, where)
        elif source is None:
            ctx.tenant = ({"field": value}, where)
        else:
            raise Unsupported(where, f"the tenant from {value}: shipper takes a tenant from the "
                              "namespace, a pod label or annotation, a field or a constant")
    else:  # loki.format
        ctx.report.differs(where, f"{value}: shipper ships the line as the runtime wrote it, "
                           "with fields as structured metadata")


def _action(ctx: Ctx, comp: Component, i: int, raw: object, list_key: str) -> None:
    where = f"{comp.path}.{list_key}[{i}]"
    cfg = as_map(raw, where)
    key = as_str(cfg.get("key"), f"{where}.key")
    if "action" not in cfg:
        ctx.report.differs(where, "no action (the Collector requires one): read as upsert")
    action = as_str(cfg.get("action", "upsert"), f"{where}.action")
    value, origin = cfg.get("value"), cfg.get("from_attribute")
    if key in (*HINTS, "loki.tenant", "loki.format"):
        _hint(ctx, where, key, as_str(value, f"{where}.value"))
        return
    target = SOURCES.get(key) if comp.type == "resource" or key == "log.iostream" else None
    if target is not None:
        _source_action(ctx, where, key, target, action, origin)
        return
    conditions: dict[str, Condition] = {"insert": {"not": {"field": key}},
                                        "update": {"field": key}}
    when = conditions.get(action)
    if action == "delete":
        ctx.stage("remove", {"fields": [key]}, where)
    elif action in ("insert", "update", "upsert") and origin is None and value is not None:
        text = str(value).lower() if isinstance(value, bool) else as_str(value, f"{where}.value")
        ctx.stage("set", {"fields": {key: text}}, where, when)
    elif action in ("insert", "update", "upsert") and origin is not None:
        name = as_str(origin, f"{where}.from_attribute")
        if source := source_of(name):
            ctx.labels.add(ctx.labels.carried, source, where)
            ctx.report.differs(where, f"{name} is shipper's {source!r}: shipped under that "
                               f"name, not {key!r}")
        else:
            ctx.stage("copy", {"from": name, "to": key}, where, when)
    elif action == "extract" and cfg.get("pattern") is not None:
        ctx.stage("regex", {"expression": as_str(cfg["pattern"], f"{where}.pattern"),
                            "source": key}, where)
    else:
        raise Unsupported(where, f"action {action!r} with these options has no shipper stage")


def _source_action(ctx: Ctx, where: str, key: str, target: str, action: str,
                   origin: object) -> None:
    if action == "delete":
        ctx.labels.add(ctx.labels.removed, target, where)
        return
    if origin is not None and source_of(as_str(origin, f"{where}.from_attribute")) == target:
        # Copying the pod's own metadata into a resource attribute is what makes the Loki
        # exporter see it: the label the config meant (as the seed's resource processor).
        ctx.labels.add(ctx.labels.stream, target, f"{where} ({key} from {origin})")
        return
    raise Unsupported(where, f"sets {key} (shipper's {target!r}) from another value: shipper "
                      "takes Kubernetes metadata from the pod")


def resource_or_attributes(ctx: Ctx, comp: Component) -> None:
    list_key = "attributes" if comp.type == "resource" else "actions"
    for key in ("include", "exclude"):
        if comp.config.get(key) is not None:
            ctx.report.unmapped(f"{comp.path}.{key}", "shipper applies a stage to every entry "
                                "of a rule, or by a when: condition on the line or fields")
    for i, raw in enumerate(as_list(comp.config.get(list_key), f"{comp.path}.{list_key}")):
        ctx.attempt(_action, ctx, comp, i, raw, list_key)


# -- batching and memory ------------------------------------------------------------------

def batch(ctx: Ctx, comp: Component) -> None:
    cfg = comp.config
    if cfg.get("send_batch_size") is not None:
        count = cfg["send_batch_size"]
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            raise Unsupported(f"{comp.path}.send_batch_size", f"{count!r}: shipper sends on a "
                              "positive number of lines (batch.size)")
        ctx.out.set("batch.size", count, f"{comp.path}.send_batch_size")
    if cfg.get("timeout") is not None:
        wait = seconds(cfg["timeout"], f"{comp.path}.timeout")
        if wait <= 0:
            raise Unsupported(f"{comp.path}.timeout", "0: shipper needs a positive batch.timeout")
        ctx.out.set("batch.timeout", duration(wait), f"{comp.path}.timeout")
    if cfg.get("send_batch_max_size"):
        ctx.report.differs(f"{comp.path}.send_batch_max_size", "shipper caps a request by "
                           "bytes (batch.max_bytes, 1MiB), not lines")


def memory_limiter(ctx: Ctx, comp: Component) -> None:
    cfg = comp.config
    if cfg.get("limit_mib") is None:
        ctx.report.differs(comp.path, "a limit in percent of the container's memory: shipper "
                           "keeps batch.max_pending_bytes (4MiB), its own bound on what it "
                           "holds; its RSS stays near 40MiB plus that")
        return
    limit = cfg["limit_mib"]
    spike = cfg.get("spike_limit_mib") or (limit // 5 if isinstance(limit, int) else None)
    if not isinstance(spike, int) or isinstance(spike, bool) or spike <= 0:
        raise Unsupported(comp.path, f"limit_mib {limit!r}, spike_limit_mib {spike!r}: "
                          "expected positive whole MiB")
    ctx.out.set("batch.max_pending_bytes", f"{max(spike, 1)}MiB", f"{comp.path}.spike_limit_mib")
    ctx.report.differs(comp.path, f"limit_mib {limit} bounds the Collector's heap; shipper "
                       "bounds what it has read and not yet had acknowledged: set to the spike "
                       f"allowance ({spike}MiB), the data the Collector let be in flight")
