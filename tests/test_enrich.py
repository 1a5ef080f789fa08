"""Labels from paths: names sanitised, values escaped, defaults as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipper.config import LabelsConfig
from shipper.enrich import Enricher, render_labels, sanitize_label_name
from shipper.kube.pod_path import link_chain, parse_log_path, workload_from_pod_name

CID = "0123456789abcdef" * 4


def test_paths_of_both_kubelet_layouts() -> None:
    meta = parse_log_path(f"/var/log/containers/api-7d9f8b6c5d-x7k2p_shop_app-{CID}.log")
    assert meta is not None and (meta.namespace, meta.pod, meta.container) == (
        "shop", "api-7d9f8b6c5d-x7k2p", "app")
    meta = parse_log_path("/elsewhere/x.log", "/var/log/pods/shop_web-0_5f1c2a9e-3b7d/web/3.log")
    assert meta is not None and (meta.namespace, meta.pod, meta.container, meta.pod_uid) == (
        "shop", "web-0", "web", "5f1c2a9e-3b7d")
    assert parse_log_path("/var/log/syslog") is None


def test_the_uid_comes_from_the_pods_directory_a_link_leads_through(tmp_path: Path) -> None:
    """Docker: /var/log/containers/x.log -> /var/log/pods/<ns>_<pod>_<uid>/<c>/0.log ->
    /var/lib/docker/containers/<id>/<id>-json.log. The real path names no uid; the hop does."""
    docker = tmp_path / f"var/lib/docker/containers/{CID}/{CID}-json.log"
    pods = tmp_path / "var/log/pods/shop_web-0_5f1c2a9e-3b7d/web/0.log"
    link = tmp_path / f"var/log/containers/web-0_shop_web-{CID}.log"
    for path in (docker, pods, link):
        path.parent.mkdir(parents=True)
    docker.touch()
    pods.symlink_to(docker)
    link.symlink_to(os.path.relpath(pods, link.parent))  # relative, as some runtimes write it
    meta = parse_log_path(*link_chain(str(link)), os.path.realpath(link))
    assert meta is not None and (meta.namespace, meta.pod, meta.container, meta.pod_uid) == (
        "shop", "web-0", "web", "5f1c2a9e-3b7d")
    without_hop = parse_log_path(str(link), os.path.realpath(link))
    assert without_hop is not None and without_hop.pod_uid == ""


@pytest.mark.parametrize(("pod", "workload"), [
    ("api-7d9f8b6c5d-x7k2p", "api"),  # Deployment -> ReplicaSet -> pod
    ("backup-28391234-q2w4z", "backup"),  # CronJob -> Job -> pod
    ("fluentd-x7k2p", "fluentd"),  # DaemonSet or Job
    ("web-12", "web"),  # StatefulSet
    ("standalone", "standalone"),  # bare pod
])
def test_workload_from_pod_name(pod: str, workload: str) -> None:
    assert workload_from_pod_name(pod) == workload


def test_label_names_are_sanitised_and_values_cannot_inject() -> None:
    assert sanitize_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert sanitize_label_name("2fa") == "_2fa"
    hostile = 'x", evil="1\n\\'
    rendered = render_labels((("app", hostile),))
    assert rendered == '{app="x\\", evil=\\"1\\n\\\\"}'
    assert rendered.count('="') == 1  # one label, however the value tries


def test_default_streams_put_pod_node_stream_in_metadata() -> None:
    enricher = Enricher(LabelsConfig(), node="node-1")
    meta = parse_log_path(f"/var/log/containers/api-7d9f8b6c5d-x7k2p_shop_app-{CID}.log")
    streams = enricher.streams(meta, "ignored")
    assert streams.stdout.labels == '{app="api", container="app", namespace="shop"}'
    assert dict(streams.stderr.metadata) == {
        "node": "node-1", "pod": "api-7d9f8b6c5d-x7k2p", "stream": "stderr"}
    assert streams.shared_key == streams.stdout.labels
    assert not streams.excluded and not streams.enriched
    # One label set per file, not one per output: thousands of files.
    assert streams.stderr.labels is streams.stdout.labels
    assert streams.stderr.label_pairs is streams.stdout.label_pairs


def test_stream_as_a_label_splits_stdout_and_stderr() -> None:
    enricher = Enricher(LabelsConfig(stream=("namespace", "stream"), structured_metadata=()), "n")
    meta = parse_log_path(f"/var/log/containers/a-0_ns_c-{CID}.log")
    streams = enricher.streams(meta, "ignored")
    assert streams.stdout.labels == '{namespace="ns", stream="stdout"}'
    assert streams.stderr.labels == '{namespace="ns", stream="stderr"}'
    assert streams.shared_key is None and streams.stdout.metadata == ()


def test_a_file_outside_kubelet_layout_gets_a_filename_label() -> None:
    streams = Enricher(LabelsConfig(), "n").streams(None, "/var/log/app/x.log")
    assert streams.stdout.label_pairs == (("filename", "/var/log/app/x.log"),)
