"""The seed architecture's Collector config, run unchanged by shipper: converted in memory, with
a second --config for what a Collector config cannot say (where positions go, the test's Loki),
end to end through the real receiver, on Docker json-file and CRI logs."""

from __future__ import annotations

from pathlib import Path

import yaml

from shipper.convert.otelcol import convert_otelcol
from tests.support.agent import config_dict, start_subprocess, terminate
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

SEED = Path(__file__).parent / "data/otelcol/seed.yaml"


def test_the_seed_converts_to_pod_and_namespace_labels_and_the_runtime_timestamp() -> None:
    conversion = convert_otelcol(SEED.read_text())
    assert conversion.report.not_mapped == []
    assert conversion.data["labels"] == {"stream": ["pod", "namespace"],
                                         "structured_metadata": ["stream"]}
    assert conversion.data["batch"] == {"size": 100, "timeout": "10s"}
    assert conversion.data["loki"] == {"url": "http://loki:3100/loki/api/v1/push"}
    assert "pipeline" not in conversion.data  # the json_parser is the Docker envelope: native
    assert "attributes.time" in conversion.text  # ...and the comments say where it went


def test_the_seed_runs_unchanged_with_pod_and_namespace_labels(tmp_path: Path) -> None:
    docker = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "api", docker=True)
    cri = PodLog(tmp_path, "ops", "worker-0", "worker")
    stamps = {"hello from docker": docker.line("hello from docker"),
              "oops": docker.line("oops", stream="stderr"),
              "hello from cri": cri.line("hello from cri"),
              "joined by the runtime": cri.partial(["joined ", "by the runtime"])}
    with LokiReceiver() as receiver:
        # What the Collector config cannot say: the test's files, Loki and positions, a fast
        # batch timeout; everything else comes from the seed as converted.
        extra = config_dict(tmp_path, receiver.url, batch={"timeout": "200ms"})
        del extra["batch"]["size"]
        (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
        agent = start_subprocess(SEED, "--config", str(tmp_path / "extra.yaml"))
        try:
            assert receiver.wait_for(lambda e: len(e) >= 4, timeout=15)
        finally:
            code, err = terminate(agent)
        entries = receiver.entries
    assert code == 0, err
    assert "an OpenTelemetry Collector config, converted in memory" in err
    assert sorted(e.line for e in entries) == sorted(stamps)
    for entry in entries:
        assert entry.timestamp_ns == stamps[entry.line]  # the runtime's time, to the ns
    by_line = {e.line: e for e in entries}
    assert by_line["hello from docker"].labels == {"namespace": "shop",
                                                   "pod": "api-7d9f8b6c5d-x7k2p"}
    assert by_line["hello from cri"].labels == {"namespace": "ops", "pod": "worker-0"}
    assert by_line["oops"].metadata == {"stream": "stderr"}
    assert by_line["hello from cri"].metadata == {"stream": "stdout"}
