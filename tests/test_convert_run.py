"""Collector configs run as they are, converted in memory by `shipper run`: their debug exporter
makes a dry run, so `shipper run --once` prints what it would push. The Helm chart's logs preset
(the container operator and k8sattributes give the entries their Kubernetes metadata) and the
filelog README's plaintext example (its regex_parser's timestamp and severity blocks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.support.kubelet import PodLog

DATA = Path(__file__).parent / "data/otelcol"


def dry_run(tmp_path: Path, collector: Path, extra: dict[str, object]) -> tuple[
        dict[str, dict[str, Any]], str]:
    """`shipper run --once` of the Collector config with `extra` over it: the entries it
    printed by line, and its stderr."""
    extra = {"positions": {"path": ""}, "server": {"listen": ""},
             "kubernetes": {"enabled": "false"}, **extra}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    env = {**os.environ, "NODE_NAME": "node-1"}
    env.pop("SHIPPER_LOKI_URL", None)
    done = subprocess.run([sys.executable, "-m", "shipper", "run", "--once", "--config",
                           str(collector), "--config", str(tmp_path / "extra.yaml")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return {e["line"]: e for e in map(json.loads, done.stdout.splitlines())}, done.stderr


def test_the_helm_logs_preset_runs_as_a_dry_run_with_kubernetes_metadata(
        tmp_path: Path) -> None:
    api = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "api")
    own = PodLog(tmp_path, "otel", "otel-opentelemetry-collector-agent-abcde",
                 "opentelemetry-collector")
    api.line("hello")
    api.partial(["joined ", "by the runtime"], stream="stderr")
    own.line("the collector's own line, excluded by the preset")
    # What the Collector config cannot say: where this test's files are, no positions file,
    # no server, no Kubernetes API; the preset's exclude glob kept, under the test's root.
    entries, err = dry_run(tmp_path, DATA / "helm-logs-preset.yaml", {"inputs": {
        "paths": [f"{tmp_path}/var/log/pods/*/*/*.log"],
        "exclude": [f"{tmp_path}/var/log/pods/otel_otel-opentelemetry-collector*_*/"
                    "opentelemetry-collector/*.log"]}})
    assert "3 not mapped (receivers.otlp" in err  # the one line saying what ran
    assert set(entries) == {"hello", "joined by the runtime"}
    hello = entries["hello"]
    assert hello["labels"] == {"namespace": "shop", "container": "api", "app": "api"}
    assert hello["structured_metadata"] == {"pod": "api-7d9f8b6c5d-x7k2p", "node": "node-1",
                                            "pod_uid": api.uid, "stream": "stdout",
                                            "workload": "api"}
    assert entries["joined by the runtime"]["structured_metadata"]["stream"] == "stderr"


def test_the_filelog_readmes_plaintext_example_runs_with_its_timestamps_and_levels(
        tmp_path: Path) -> None:
    log = tmp_path / "simple.log"
    log.write_text("2023-06-19 05:20:50 ERROR This is a test error message\n"
                   "2023-06-20 12:50:00 DEBUG This is a test debug message\n")
    entries, _ = dry_run(tmp_path, DATA / "filelog-plaintext.yaml",
                         {"inputs": {"paths": [str(log)]}})
    error = entries["2023-06-19 05:20:50 ERROR This is a test error message"]
    assert error["timestamp_ns"] == int(datetime(2023, 6, 19, 5, 20, 50,
                                                 tzinfo=UTC).timestamp()) * 10**9
    assert error["structured_metadata"]["detected_level"] == "error"
    assert error["structured_metadata"]["msg"] == "This is a test error message"
    debug = entries["2023-06-20 12:50:00 DEBUG This is a test debug message"]
    assert debug["structured_metadata"]["detected_level"] == "debug"
