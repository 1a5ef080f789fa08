"""Grafana dashboards: valid dashboard JSON, shipped by kustomize, and every query names only
the metrics, labels and structured metadata the agent really emits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shipper.config import LABEL_SOURCES, parse_config
from shipper.enrich import Enricher, sanitize_label_name
from shipper.kube.pod_path import PathMeta
from shipper.metrics import Metrics

K8S = Path(__file__).parent.parent / "deploy/k8s"
DASHBOARDS = sorted((K8S / "dashboards").glob("*.json"))
# Labels Prometheus attaches to every scraped series, whatever the discovery.
TARGET_LABELS = {"instance", "job"}
GRAFANA_VARIABLES = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s",
                     "__auto"}
PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "delta", "deriv", "floor", "group",
    "histogram_quantile", "idelta", "increase", "irate", "label_replace", "last_over_time",
    "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "rate",
    "resets", "round", "scalar", "sort", "sort_desc", "stddev", "sum", "sum_over_time", "time",
    "timestamp", "topk", "vector"}
LOGQL_FUNCTIONS = {
    "absent_over_time", "avg", "bottomk", "bytes_over_time", "bytes_rate", "count",
    "count_over_time", "max", "min", "rate", "sort", "sort_desc", "stddev", "sum", "topk"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


# -- what the agent emits --------------------------------------------------------------------------

@dataclass(frozen=True)
class Emitted:
    metrics: dict[str, set[str]]  # exposed sample name -> its label names
    stream_labels: set[str]
    metadata: set[str]


def emitted_metrics() -> dict[str, set[str]]:
    """Sample names as exposed in a live registry (process_* included), with their labels."""
    m = Metrics(node="node-1")
    labels = {next(iter(w.describe())).name: set(w._labelnames)  # no public label-name accessor
              for w in vars(m).values() if isinstance(w, MetricWrapperBase)}
    labels |= {family.name: {"path"} for family in m.per_file.describe()}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "summary": ("_count", "_sum", ""), "gauge": ("",), "info": ("_info",)}
    names: dict[str, set[str]] = {}
    for family in m.registry.collect():
        for suffix in suffixes[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            names[family.name + suffix] = labels.get(family.name, set()) | extra
    return names


def deployed_labels() -> tuple[set[str], set[str]]:
    """Stream label and structured-metadata names of an entry, as the enricher builds them
    under the config the DaemonSet runs (deploy/k8s/shipper.yaml)."""
    config_map = next(d for d in documents("shipper.yaml")
                      if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "shipper-config")
    config = parse_config(config_map["data"]["config.yaml"], env={})
    meta = PathMeta("shop", "api-7d9f8b6c5d-x7k2p", "api", "0b6a4c1e-1111-2222-3333-444455556666")
    streams = Enricher(config.labels, "node-1").streams(meta, "/var/log/containers/x.log")
    stream_labels = {name for s in (streams.stdout, streams.stderr) for name, _ in s.label_pairs}
    metadata = {name for s in (streams.stdout, streams.stderr) for name, _ in s.metadata}
    metadata |= {sanitize_label_name(k)
                 for k in (*config.labels.pod_labels, *config.labels.pod_annotations)}
    return stream_labels, metadata


@pytest.fixture(scope="module")
def emitted() -> Emitted:
    stream_labels, metadata = deployed_labels()
    return Emitted(emitted_metrics(), stream_labels, metadata)


# -- a small tokenizer for PromQL and LogQL --------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{?\w+(?::\w+)?\}?)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][\w:]*)
  | (?P<op>\|=|\|~|=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},|])
  | (?P<space>\s+)
""", re.X)


@dataclass
class Names:
    """The names one expression references."""

    metrics: dict[str, set[str]] = field(default_factory=dict)  # metric -> its matcher labels
    selector_labels: set[str] = field(default_factory=set)  # inside {...}
    filter_labels: set[str] = field(default_factory=set)  # LogQL `| name op value`
    grouping: set[str] = field(default_factory=set)  # by/without/on/ignoring/group_*
    by: set[str] = field(default_factory=set)  # what an aggregation keeps
    functions: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)


def tokens(expr: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            yield kind, m.group()


def names_in(expr: str) -> Names:
    out = Names(variables=set(re.findall(r"\$\{?(\w+)", expr)))
    toks = list(tokens(expr))
    depth = 0  # inside a {...} selector
    grouping_open = ""  # inside the (...) of by, on, group_left...: which one
    metric: str | None = None  # the metric a following {...} belongs to
    for i, (kind, text) in enumerate(toks):
        after = toks[i + 1][1] if i + 1 < len(toks) else ""
        before = toks[i - 1][1] if i else ""
        if grouping_open:
            if text == ")":
                grouping_open = ""
            elif kind == "ident":
                out.grouping.add(text)
                if grouping_open == "by":
                    out.by.add(text)
        elif text in "{}":
            depth += 1 if text == "{" else -1
            metric = metric if text == "{" else None
        elif depth:
            if kind == "ident" and after in ("=", "!=", "=~", "!~"):
                out.selector_labels.add(text)
                if metric is not None:
                    out.metrics[metric].add(text)
        else:
            metric = None
            if kind != "ident" or text in KEYWORDS:
                continue
            if text in GROUPING:
                grouping_open = text if after == "(" else ""
            elif after == "(" or after in GROUPING:  # sum(...), sum by (...) (...)
                out.functions.add(text)
            elif before == "|":
                out.filter_labels.add(text)
            else:
                out.metrics.setdefault(text, set())
                metric = text
    if depth or grouping_open:
        raise ValueError(f"unbalanced expression: {expr!r}")
    return out


def promql_problems(expr: str, emitted: Emitted, variables: set[str]) -> list[str]:
    n = names_in(expr)
    problems = [f"unknown function {f}" for f in n.functions - PROMQL_FUNCTIONS]
    problems += [f"unknown variable ${v}" for v in n.variables - variables - GRAFANA_VARIABLES]
    in_scope = set(TARGET_LABELS)
    for metric, matchers in n.metrics.items():
        if metric not in emitted.metrics:
            problems.append(f"unknown metric {metric}")
            continue
        labels = emitted.metrics[metric] | TARGET_LABELS
        in_scope |= labels
        problems += [f"{metric} has no label {x}" for x in matchers - labels]
    problems += [f"no metric here has label {x}" for x in n.grouping - in_scope]
    if n.filter_labels:
        problems.append(f"not PromQL: {sorted(n.filter_labels)}")
    return problems


def logql_problems(expr: str, emitted: Emitted, variables: set[str]) -> list[str]:
    n = names_in(expr)
    problems = [f"unknown function {f}" for f in n.functions - LOGQL_FUNCTIONS]
    problems += [f"unknown variable ${v}" for v in n.variables - variables - GRAFANA_VARIABLES]
    problems += [f"not a stream label: {x}" for x in n.selector_labels - emitted.stream_labels]
    entry_labels = emitted.stream_labels | emitted.metadata
    problems += [f"not a label or metadata: {x}" for x in n.filter_labels - entry_labels]
    problems += [f"cannot group by {x}" for x in n.grouping - entry_labels]
    if n.metrics:
        problems.append(f"stray names (LogQL has no metric names): {sorted(n.metrics)}")
    if not n.selector_labels:
        problems.append("no stream selector")
    return problems


# -- walking a dashboard ---------------------------------------------------------------------------

def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def variable_names(dashboard: dict[str, Any]) -> set[str]:
    return {v["name"] for v in dashboard["templating"]["list"]}


def targets(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in panels(dashboard):
        yield from panel.get("targets", [])


def target_problems(target: dict[str, Any], emitted: Emitted, variables: set[str]) -> list[str]:
    expr = target["expr"]
    check = logql_problems if target["datasource"]["type"] == "loki" else promql_problems
    problems = check(expr, emitted, variables)
    # A legend can only name labels the query keeps: its `by`, or else the series' own.
    n = names_in(expr)
    kept = n.by or set().union(*n.metrics.values(), TARGET_LABELS)
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    return problems + [f"legend label {x} not kept by {expr!r}" for x in legend - kept]


def variable_problems(var: dict[str, Any], emitted: Emitted, variables: set[str]) -> list[str]:
    if var["type"] != "query":
        return []
    query = var["query"]
    if var["datasource"]["type"] == "loki":  # label values of a stream label, in some streams
        problems = [] if query["label"] in emitted.stream_labels else [
            f"variable {var['name']}: {query['label']} is not a stream label"]
        if query["stream"]:
            problems += logql_problems(query["stream"], emitted, variables)
        return problems
    m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query["query"])
    if m is None:
        return [f"variable {var['name']}: unexpected query {query['query']!r}"]
    metric, label = m.groups()
    if label in emitted.metrics.get(metric, set()):
        return []
    return [f"variable {var['name']}: {metric} has no label {label}"]


def problems_of(dashboard: dict[str, Any], emitted: Emitted) -> list[str]:
    variables = variable_names(dashboard)
    problems = [p for t in targets(dashboard) for p in target_problems(t, emitted, variables)]
    return problems + [p for v in dashboard["templating"]["list"]
                       for p in variable_problems(v, emitted, variables)]


# -- the tests -------------------------------------------------------------------------------------

def test_both_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == ["container-logs.json", "log-shipper.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_grafana_dashboard_structure(path: Path) -> None:
    d = load(path)
    assert isinstance(d["title"], str) and d["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"])
    assert 36 <= d["schemaVersion"] <= 41
    assert d["panels"] and isinstance(d["templating"]["list"], list)
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels(d):
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and g["w"] > 0 and g["h"] > 0
        assert g["x"] + g["w"] <= 24, f"{panel['title']} is wider than the grid"
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        assert panel["type"] in {"timeseries", "stat", "bargauge", "logs", "table", "row"}
        if panel["type"] == "row":
            continue
        assert set(panel["datasource"]) >= {"type", "uid"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"] and t["expr"].strip()
    for var in d["templating"]["list"]:
        assert var["type"] in {"query", "textbox", "custom", "constant", "interval"}
        assert re.fullmatch(r"\w+", var["name"])
        if var["type"] == "query":
            assert set(var["datasource"]) >= {"type", "uid"} and var["definition"]


def test_datasource_uids_are_provisioned() -> None:
    manifest = (K8S / "grafana-datasource.yaml").read_text(encoding="utf-8")
    provisioned = {ds["uid"]: ds["type"]
                   for doc in documents("grafana-datasource.yaml")
                   for body in doc["data"].values()
                   for ds in yaml.safe_load(body)["datasources"]}
    # Not in our manifests: kube-prometheus-stack's Grafana provisions its Prometheus with uid
    # "prometheus", and grafana-datasource.yaml states that the dashboards expect it.
    expected_elsewhere = {"prometheus": "prometheus"}
    assert 'uid "prometheus"' in manifest
    used = set()
    for path in DASHBOARDS:
        d = load(path)
        refs = [p["datasource"] for p in panels(d) if "datasource" in p]
        refs += [t["datasource"] for p in panels(d) for t in p.get("targets", [])]
        refs += [v["datasource"] for v in d["templating"]["list"] if "datasource" in v]
        for ref in refs:
            if ref["type"] == "grafana":
                continue
            known = provisioned.get(ref["uid"]) or expected_elsewhere.get(ref["uid"])
            assert known == ref["type"], f"{path.name}: datasource {ref} is not provisioned"
            used.add(ref["uid"])
    assert used == {"loki", "prometheus"}


def test_kustomize_ships_each_dashboard_as_a_labelled_config_map() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    shipped = {}
    for gen in kustomization["configMapGenerator"]:
        for file in gen["files"]:
            shipped[file] = gen["options"]["labels"]
    for path in DASHBOARDS:
        labels = shipped[f"dashboards/{path.name}"]
        assert labels["grafana_dashboard"] == "1"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_uses_only_names_the_agent_emits(path: Path, emitted: Emitted) -> None:
    assert emitted.stream_labels | emitted.metadata <= set(LABEL_SOURCES)
    assert problems_of(load(path), emitted) == []


def test_the_emitted_names_are_the_deployed_ones(emitted: Emitted) -> None:
    # What the checks above compare against: if these drift, the dashboards must follow.
    assert emitted.stream_labels == {"namespace", "container", "app"}
    assert emitted.metadata == {"pod", "node", "stream"}
    assert emitted.metrics["shipper_dropped_entries_total"] == {"reason"}
    assert emitted.metrics["shipper_request_duration_seconds_bucket"] == {"status_code", "le"}
    assert "process_resident_memory_bytes" in emitted.metrics
    assert not any(name.endswith("_created") for name in emitted.metrics)


def test_the_dashboards_cover_every_shipper_metric(emitted: Emitted) -> None:
    used = {metric for path in DASHBOARDS for t in targets(load(path))
            if t["datasource"]["type"] == "prometheus" for metric in names_in(t["expr"]).metrics}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in emitted.metrics
                if n.startswith("shipper_")}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert families - shown == set()


@pytest.mark.parametrize(("metric", "limit"), [
    ("process_cpu_seconds_total", "cpu"), ("process_resident_memory_bytes", "memory")])
def test_resource_panels_draw_the_daemonset_limits(metric: str, limit: str) -> None:
    daemonset = next(d for d in documents("shipper.yaml") if d["kind"] == "DaemonSet")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    amount = re.fullmatch(r"(\d+)(m|Mi)", container["resources"]["limits"][limit])
    assert amount is not None
    value = int(amount[1]) * {"m": 0.001, "Mi": 1024**2}[amount[2]]
    panel = next(p for p in panels(load(K8S / "dashboards/log-shipper.json"))
                 if any(metric in t["expr"] for t in p.get("targets", [])))
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"].startswith("line")
    assert value in [step["value"] for step in defaults["thresholds"]["steps"]]


# -- the checker itself: it must catch what a typo would break -------------------------------------

SHIPPER = "log-shipper.json"
LOGS = "container-logs.json"


@pytest.mark.parametrize(("dashboard", "good", "bad", "complaint"), [
    (SHIPPER, "shipper_read_lines_total", "shipper_read_line_total", "unknown metric"),
    (SHIPPER, "shipper_build_info{node=", "shipper_build_info{nod=", "has no label nod"),
    (SHIPPER, "sum by (reason)", "sum by (reasons)", "no metric here has label reasons"),
    (SHIPPER, "histogram_quantile(", "histogram_quantil(", "unknown function"),
    (SHIPPER, "process_resident_memory_bytes", "process_resident_memory", "unknown metric"),
    (SHIPPER, "shipper_request_duration_seconds_bucket", "shipper_request_duration_seconds",
     "unknown metric"),
    (SHIPPER, '{node=~"$node"}', '{node=~"$nodes"}', "unknown variable $nodes"),
    (SHIPPER, 'label_values(shipper_build_info, node)', 'label_values(shipper_build_info, nod)',
     "has no label nod"),
    (LOGS, 'namespace=~"$namespace", app', 'namspace=~"$namespace", app', "not a stream label"),
    (LOGS, '| pod=~"$pod"', '| pods=~"$pod"', "not a label or metadata: pods"),
    (LOGS, '| pod=~"$pod"', '| filename=~"$pod"', "not a label or metadata: filename"),
    (LOGS, "sum by (stream)", "sum by (steam)", "cannot group by steam"),
    (LOGS, '{namespace=~"$namespace", app=~"$app"', '{namespace=~"$namespace", pod=~"$app"',
     "not a stream label: pod"),
    (LOGS, "count_over_time(", "count_over_tim(", "unknown function"),
    (LOGS, "{{stream}}", "{{steam}}", "legend label steam"),
])
def test_the_checker_catches_typos(dashboard: str, good: str, bad: str, complaint: str,
                                   emitted: Emitted) -> None:
    text = (K8S / "dashboards" / dashboard).read_text(encoding="utf-8")
    escaped_good, escaped_bad = (json.dumps(s)[1:-1] for s in (good, bad))
    assert escaped_good in text, f"the dashboard no longer contains {good!r}"
    broken = json.loads(text.replace(escaped_good, escaped_bad, 1))
    problems = problems_of(broken, emitted)
    assert any(complaint in p for p in problems), problems


def test_the_tokenizer_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot tokenize"):
        names_in("sum(rate(x[5m])) # comment")
    with pytest.raises(ValueError, match="unbalanced"):
        names_in('rate({namespace="a"[5m])')


# -- docs/observability.md: every metric documented, every suggested alert well named ---------

DOC = Path(__file__).parent.parent / "docs" / "observability.md"
# Not the agent's: the NotReady alert reads the DaemonSet's status from kube-state-metrics.
KUBE_STATE = {"kube_daemonset_status_number_unavailable": {"namespace", "daemonset"}}


def test_metrics_doc_lists_every_exported_metric(emitted: Emitted) -> None:
    documented = set(re.findall(r"^\| `(\w+)` \| (?:counter|gauge|histogram) \|",
                                DOC.read_text(encoding="utf-8"), re.M))
    exported = {re.sub(r"_(bucket|count|sum)$", "", n) for n in emitted.metrics}
    assert documented == exported


def test_metrics_doc_alerts_use_emitted_names(emitted: Emitted) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    documents = [yaml.safe_load(block) for block in blocks]
    rules = [rule for doc in documents if doc.get("kind") == "PrometheusRule"
             for group in doc["spec"]["groups"] for rule in group["rules"]]
    assert {"ShipperDroppingEntries", "ShipperLagGrowing", "ShipperNotReady"} <= {
        r["alert"] for r in rules}
    known = Emitted({**emitted.metrics, **KUBE_STATE}, emitted.stream_labels, emitted.metadata)
    for rule in rules:
        assert promql_problems(rule["expr"], known, set()) == [], rule["alert"]
