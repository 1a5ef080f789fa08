"""The Collector Helm chart's logs preset, run as it is: its debug exporter makes a dry run, so
`shipper run --once` prints what it would push; the container operator and k8sattributes it
converts to give the entries their Kubernetes metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.kubelet import PodLog

HELM = Path(__file__).parent / "data/otelcol/helm-logs-preset.yaml"


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
    extra = {"inputs": {"paths": [f"{tmp_path}/var/log/pods/*/*/*.log"],
                        "exclude": [f"{tmp_path}/var/log/pods/otel_otel-opentelemetry-collector*"
                                    "_*/opentelemetry-collector/*.log"]},
             "positions": {"path": ""}, "server": {"listen": ""},
             "kubernetes": {"enabled": "false"}}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    env = {**os.environ, "NODE_NAME": "node-1"}
    env.pop("SHIPPER_LOKI_URL", None)
    done = subprocess.run([sys.executable, "-m", "shipper", "run", "--once", "--config",
                           str(HELM), "--config", str(tmp_path / "extra.yaml")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "3 not mapped (receivers.otlp" in done.stderr  # the one line saying what ran
    entries = {e["line"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert set(entries) == {"hello", "joined by the runtime"}
    hello = entries["hello"]
    assert hello["labels"] == {"namespace": "shop", "container": "api", "app": "api"}
    assert hello["structured_metadata"] == {"pod": "api-7d9f8b6c5d-x7k2p", "node": "node-1",
                                            "pod_uid": api.uid, "stream": "stdout",
                                            "workload": "api"}
    assert entries["joined by the runtime"]["structured_metadata"]["stream"] == "stderr"
