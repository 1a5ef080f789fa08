"""Processors, exporters and the Collector's own settings converted: which Kubernetes metadata
is shipped and how, label hints, batching, memory, filters, where and how to push."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from shipper.convert.otelcol import convert_otelcol
from tests.support.kubelet import PodLog
from tests.support.otelcol import behave, collector, convert, fatal, stages, unmapped


def test_k8sattributes_metadata_labels_and_annotations() -> None:
    conversion = convert(container=False, processors={"k8sattributes": {
        "filter": {"node_from_env_var": "NODE_NAME"},
        "extract": {
            "metadata": ["k8s.namespace.name", "k8s.pod.name", "k8s.deployment.name",
                         "k8s.node.name", "k8s.pod.start_time", "container.image.name"],
            "labels": [{"tag_name": "team", "key": "team", "from": "pod"},
                       {"key_regex": "(.*)", "tag_name": "$$1", "from": "pod"},
                       {"key": "tier", "from": "namespace"}],
            "annotations": [{"key": "owner"}]}}})
    labels = conversion.data["labels"]
    assert "stream" not in labels  # nothing promoted: shipper's default stream labels
    assert labels["structured_metadata"] == ["pod", "workload", "node"]
    assert (labels["pod_labels"], labels["pod_annotations"]) == (["team"], ["owner"])
    assert set(unmapped(conversion)) == {
        "processors.k8sattributes.extract.metadata",  # start_time, image name
        "processors.k8sattributes.extract.labels[1]",  # key_regex
        "processors.k8sattributes.extract.labels[2]"}  # from a namespace
    assert not fatal(conversion)


def test_the_node_name_variable_is_named_for_the_daemonset() -> None:
    text = collector(processors={"k8sattributes": {"filter": {"node_from_env_var": "K8S_NODE"}}})
    converted = convert_otelcol(text)
    assert any("NODE_NAME" in f.reason for f in converted.report.differences)
    assert convert_otelcol(text, env={"K8S_NODE": "node-7"}).data["kubernetes"] == {
        "node_name": "node-7"}


def test_resource_and_attributes_actions() -> None:
    conversion = convert(processors={
        "attributes": {"actions": [
            {"key": "env", "value": "prod", "action": "insert"},
            {"key": "region", "value": "eu", "action": "update"},
            {"key": "team", "value": "core", "action": "upsert"},
            {"key": "owner", "from_attribute": "user", "action": "upsert"},
            {"key": "password", "action": "delete"},
            {"key": "url", "pattern": "^(?P<scheme>\\w+)://", "action": "extract"},
            {"key": "user", "action": "hash"}]},
        "resource": {"attributes": [
            {"key": "k8s.pod.name", "action": "delete"},
            {"key": "instance", "from_attribute": "k8s.pod.uid", "action": "insert"}]}})
    assert stages(conversion) == [
        {"set": {"fields": {"env": "prod"}}, "when": {"not": {"field": "env"}}},
        {"set": {"fields": {"region": "eu"}}, "when": {"field": "region"}},
        {"set": {"fields": {"team": "core"}}},
        {"copy": {"from": "user", "to": "owner"}},
        {"remove": {"fields": ["password"]}},
        {"regex": {"expression": "^(?P<scheme>\\w+)://", "source": "url"}}]
    # attributes processor README: insert adds only where missing, update only where present
    [out] = behave(conversion, ["x"], fields={"env": "dev", "user": "ann", "password": "pw",
                                              "url": "https://x"})
    assert out.fields == {"env": "dev", "team": "core", "user": "ann", "owner": "ann",
                          "url": "https://x", "scheme": "https"}
    assert set(unmapped(conversion)) == {"processors.attributes.actions[6]"}  # hash
    assert "pod" not in conversion.data["labels"]["structured_metadata"]  # deleted
    assert "pod_uid" in conversion.data["labels"]["structured_metadata"]


def test_the_seeds_resource_processor_means_stream_labels() -> None:
    conversion = convert(container=False, processors={"resource": {"attributes": [
        {"key": "k8s.pod.name", "from_attribute": "pod_name"},
        {"key": "k8s.namespace.name", "from_attribute": "namespace"}]}})
    assert conversion.data["labels"]["stream"] == ["pod", "namespace"]
    overridden = convert(processors={"resource": {"attributes": [
        {"key": "k8s.namespace.name", "value": "fixed", "action": "upsert"}]}})
    assert "processors.resource.attributes[0]" in unmapped(overridden)


def test_loki_label_hints_and_tenant() -> None:
    conversion = convert(processors={
        "resource": {"attributes": [
            {"action": "insert", "key": "loki.resource.labels",
             "value": "k8s.namespace.name, k8s.container.name, cluster"},
            {"action": "insert", "key": "loki.tenant", "value": "k8s.namespace.name"},
            {"action": "insert", "key": "loki.format", "value": "logfmt"}]},
        "attributes": {"actions": [
            {"action": "insert", "key": "loki.attribute.labels", "value": "event.domain"}]}})
    assert conversion.data["labels"]["stream"] == ["namespace", "container"]
    assert stages(conversion) == [
        {"labels": {"fields": {"cluster": "cluster", "event_domain": "event.domain"}}},
        {"tenant": {"namespace": True}}]
    [out] = behave(conversion, ["x"], fields={"cluster": "eu-1", "event.domain": "auth"})
    assert (out.labels, out.tenant) == ({"cluster": "eu-1", "event_domain": "auth"}, "shop")
    assert any(f.path == "processors.resource.attributes[2]"
               for f in conversion.report.differences)  # loki.format


def test_batch_and_memory_limiter() -> None:
    conversion = convert(processors={
        "batch": {"send_batch_size": 1024, "timeout": "200ms", "send_batch_max_size": 2048},
        "memory_limiter": {"check_interval": "1s", "limit_mib": 400}})
    assert conversion.data["batch"] == {"size": 1024, "timeout": "200ms",
                                        "max_pending_bytes": "80MiB"}  # 20% of the limit
    percent = convert(processors={"memory_limiter": {"limit_percentage": 80}})
    assert "batch" not in percent.data and percent.report.not_mapped == []


# -- the filter processor -----------------------------------------------------------------------

def test_filter_processor_conditions_become_drop_stages() -> None:
    conversion = convert([{"type": "json_parser", "severity": {"parse_from": "attributes.lvl"}}],
                         processors={"filter/ottl": {"error_mode": "ignore", "logs": {
                             "log_record": ['IsMatch(body, ".*password.*")',
                                            "severity_number < SEVERITY_NUMBER_WARN",
                                            'attributes["path"] == "/healthz"']}}})
    assert stages(conversion)[2:] == [
        {"drop": {"line": ".*password.*"}},
        {"drop": {"any": [{"level": ["unknown", "trace", "debug", "info"]},
                          {"not": {"field": "detected_level"}}]}},
        {"drop": {"field": "path", "value": "/healthz"}}]
    lines = ['{"lvl": "warn", "msg": "disk 91%"}', '{"lvl": "error", "msg": "password=x"}',
             '{"lvl": "debug", "msg": "tick"}', '{"lvl": "error", "path": "/healthz"}',
             '{"lvl": "fatal", "msg": "out of memory"}']
    assert [r.line for r in behave(conversion, lines)] == [lines[0], lines[4]]


def test_a_severity_filter_treats_an_entry_without_severity_as_unspecified() -> None:
    conversion = convert([{"type": "json_parser", "if": 'body matches "^{"',
                           "severity": {"parse_from": "attributes.lvl"}}],
                         processors={"filter": {"logs": {"log_record": [
                             "severity_number < SEVERITY_NUMBER_WARN"]}}})
    kept = behave(conversion, ['{"lvl": "error"}', "ERROR not JSON, so no severity"])
    assert [r.line for r in kept] == ['{"lvl": "error"}']


def test_a_severity_filter_without_a_parsed_severity_does_not_map() -> None:
    conversion = convert(processors={"filter": {"logs": {"log_record": [
        "severity_number < SEVERITY_NUMBER_WARN"]}}})
    assert fatal(conversion) == {"processors.filter.logs.log_record[0]"}


def test_filtering_whole_namespaces_pods_or_containers_excludes_their_files(
        tmp_path: Path) -> None:
    conversion = convert(processors={"filter": {"logs": {"log_record": [
        'resource.attributes["k8s.namespace.name"] == "kube-system" or '
        'resource.attributes["k8s.namespace.name"] == "istio-system"',
        'resource.attributes["k8s.container.name"] == "istio-proxy"',
        'resource.attributes["k8s.pod.name"] == "noisy-0"']}}},
        receiver={"include": ["/var/log/pods/*/*/*.log", "/var/log/containers/*.log"]})
    assert stages(conversion) == []
    excluded = conversion.data["inputs"]["exclude"]

    def dropped(ns: str, pod: str, container: str) -> list[bool]:
        """Behaviour: shipper's exclusion (fnmatch on the path found) on kubelet's names."""
        log = PodLog(tmp_path, ns, pod, container)
        paths = ["/" + str(p.relative_to(tmp_path)) for p in (log.file, log.link)]
        return [any(fnmatch.fnmatch(p, g) for g in excluded) for p in paths]
    assert dropped("kube-system", "coredns-abc", "coredns") == [True, True]
    assert dropped("istio-system", "istiod-1", "discovery") == [True, True]
    assert dropped("shop", "api-1", "istio-proxy") == [True, True]
    assert dropped("shop", "noisy-0", "app") == [True, True]
    assert dropped("shop", "api-1", "istio-proxy-init") == [False, False]
    assert dropped("kube-systemd", "x-1", "istio") == [False, False]
    assert dropped("shop", "noisy-01", "app") == [False, False]


def test_legacy_filter_properties() -> None:
    conversion = convert(processors={"filter": {"logs": {
        "exclude": {"match_type": "regexp", "bodies": ["^GET /health"]},
        "include": {"match_type": "strict",
                    "record_attributes": [{"key": "env", "value": "prod"}]}}}})
    assert stages(conversion) == [{"drop": {"any": [{"line": "^GET /health"}]}},
                                  {"keep": {"field": "env", "value": "prod"}}]
    kept = [r.line for line, env in (("GET /health", "prod"), ("GET /a", "prod"),
                                     ("GET /b", "dev"))
            for r in behave(conversion, [line], fields={"env": env})]
    assert kept == ["GET /a"]
    resources = convert(processors={"filter": {"logs": {"exclude": {
        "match_type": "strict", "resource_attributes": [{"key": "host.name", "value": "x"}]}}}})
    assert fatal(resources) == {"processors.filter.logs.exclude"}


def test_processors_shipper_lacks() -> None:
    conversion = convert(processors={"transform": {}, "probabilistic_sampler": {}})
    assert set(unmapped(conversion)) == {"processors.transform",
                                         "processors.probabilistic_sampler"}
    assert fatal(conversion) == {"processors.probabilistic_sampler"}  # it drops entries


# -- exporters and the Collector's own settings ------------------------------------------------

def test_loki_exporter_settings() -> None:
    conversion = convert(extensions={"basicauth/loki": {"client_auth": {"username": "ops",
                                                                        "password": "pw"}}},
                         exporters={"loki": {
                             "endpoint": "https://loki.example.com/loki/api/v1/push",
                             "headers": {"X-Scope-OrgID": "acme", "X-Team": "core"},
                             "tls": {"ca_file": "/etc/ca.pem", "insecure_skip_verify": False},
                             "timeout": "30s",
                             "auth": {"authenticator": "basicauth/loki"}}})
    assert conversion.data["loki"] == {
        "url": "https://loki.example.com/loki/api/v1/push", "tenant_id": "acme",
        "tls": {"ca_file": "/etc/ca.pem", "insecure_skip_verify": False}, "timeout": "30s",
        "basic_auth": {"username": "ops"}}
    findings = {f.path: f for f in conversion.report.not_mapped}
    assert not findings["exporters.loki.headers.X-Team"].changes_lines
    password = findings["extensions.basicauth/loki.client_auth.password"]
    assert password.changes_lines and password.resolved_by == "loki.basic_auth.password_file"


def test_a_bearer_token_file_maps_and_an_inline_token_does_not() -> None:
    auth = {"auth": {"authenticator": "bearertokenauth"}, "endpoint": "http://l:1/loki/api/v1/push"}
    mapped = convert(exporters={"loki": auth},
                     extensions={"bearertokenauth": {"filename": "/var/run/token"}})
    assert mapped.data["loki"]["bearer_token_file"] == "/var/run/token"
    inline = convert(exporters={"loki": auth}, extensions={"bearertokenauth": {"token": "t"}})
    assert fatal(inline) == {"extensions.bearertokenauth.token"}


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://loki:3100/otlp", "http://loki:3100/loki/api/v1/push"),
    ("https://gw.example.com/loki/otlp/v1/logs", "https://gw.example.com/loki/loki/api/v1/push"),
])
def test_otlphttp_to_lokis_otlp_endpoint_pushes_to_its_push_api(endpoint: str,
                                                                 url: str) -> None:
    conversion = convert(exporters={"otlphttp": {"endpoint": endpoint}},
                         processors={"k8sattributes": {}})
    assert conversion.data["loki"]["url"] == url
    # What Loki's OTLP endpoint indexes by default stays a stream label
    assert conversion.data["labels"]["stream"] == ["namespace", "pod", "container", "workload"]


def test_otlphttp_elsewhere_and_other_exporters_do_not_map() -> None:
    conversion = convert(exporters={"otlphttp": {"endpoint": "http://tempo:4318"},
                                    "kafka": {}})
    assert fatal(conversion) == {"exporters.otlphttp.endpoint",
                                 "service.pipelines.logs.exporters"}


def test_debug_exporter_is_a_dry_run() -> None:
    assert convert(exporters={"debug": {"verbosity": "detailed"}}).data["loki"] == {"url": ""}


def test_an_endpoint_from_the_environment() -> None:
    text = collector(exporters={"loki": {"endpoint": "${env:LOKI_URL}"}})
    converted = convert_otelcol(text)
    assert "loki" not in converted.data
    assert any("SHIPPER_LOKI_URL" in f.reason for f in converted.report.differences)
    run = convert_otelcol(text, env={"LOKI_URL": "http://gw:80/loki/api/v1/push"})
    assert run.data["loki"]["url"] == "http://gw:80/loki/api/v1/push"


def test_telemetry_and_storage() -> None:
    text = collector(receiver={"storage": "file_storage"},
                     extensions={"file_storage": {"directory": "/var/lib/otelcol"}})
    doc = text + "  telemetry:\n    metrics: {address: '${env:MY_POD_IP}:8888'}\n" \
                 "    logs: {level: warn}\n"
    conversion = convert_otelcol(doc)
    assert conversion.data["positions"] == {"path": "/var/lib/otelcol/shipper-positions.json"}
    assert conversion.data["server"] == {"listen": "0.0.0.0:8888"}
    assert conversion.data["log"] == {"level": "warning"}


def test_pod_labels_under_their_tag_names() -> None:
    conversion = convert(processors={
        "k8sattributes": {"extract": {"metadata": ["k8s.namespace.name"], "labels": [
            {"tag_name": "app", "key": "app.kubernetes.io/name"},
            {"key": "team"}]}},
        "resource": {"attributes": [{"action": "insert", "key": "loki.resource.labels",
                                     "value": "app, k8s.pod.labels.team"}]}})
    assert conversion.data["labels"]["stream"] == ["app"]  # app.kubernetes.io/name: shipper's app
    assert conversion.data["labels"]["pod_labels"] == ["team"]
    assert "processors.resource.attributes[0]" in unmapped(conversion)  # a pod label as a label
