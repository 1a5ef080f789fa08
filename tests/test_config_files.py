"""Several --config files: merged in order, key by key; a Collector config among them is
converted in memory, and what it could not express comes from the files after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shipper.config import ConfigError
from shipper.config_files import load_configs, merge

COLLECTOR = """
receivers: {filelog: {include: [/var/log/pods/*/*/*.log]}}
processors: {batch: {send_batch_size: 500, timeout: 2s}}
exporters:
  loki:
    endpoint: ${env:LOKI_URL}
    auth: {authenticator: basicauth/loki}
extensions:
  basicauth/loki: {client_auth: {username: ops, password: "${env:LOKI_PASSWORD}"}}
service:
  extensions: [basicauth/loki]
  pipelines: {logs: {receivers: [filelog], processors: [batch], exporters: [loki]}}
"""
ENV = {"LOKI_URL": "http://gateway:8080/loki/api/v1/push", "LOKI_PASSWORD": "s3cret"}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_mappings_merge_key_by_key_and_lists_and_scalars_are_replaced() -> None:
    base = {"inputs": {"paths": ["/a"], "exclude": ["/b"]}, "batch": {"size": 1},
            "pipeline": [{"stages": [{"json": {}}]}]}
    over = {"inputs": {"paths": ["/c"]}, "batch": {"timeout": "1s"}, "pipeline": []}
    assert merge(base, over) == {"inputs": {"paths": ["/c"], "exclude": ["/b"]},
                                 "batch": {"size": 1, "timeout": "1s"}, "pipeline": []}


def test_later_shipper_files_override_earlier_ones(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "batch: {size: 10, timeout: 5s}\nlog: {level: debug}\n")
    second = write(tmp_path, "b.yaml", "batch: {size: 20}\n")
    config = load_configs([first, second], env={}).config
    assert (config.batch.size, config.batch.timeout, config.log.level) == (20, 5.0, "debug")


def test_a_collector_config_needs_the_password_file_a_later_file_gives(tmp_path: Path) -> None:
    otel = write(tmp_path, "otel.yaml", COLLECTOR)
    with pytest.raises(ConfigError) as error:
        load_configs([otel], env=ENV)
    assert error.value.key == "extensions.basicauth/loki.client_auth.password"
    assert "set loki.basic_auth.password_file in a later --config file" in str(error.value)
    secret = tmp_path / "password"
    secret.write_text("s3cret")
    extra = write(tmp_path, "extra.yaml", f"loki: {{basic_auth: {{password_file: {secret}}}}}\n"
                  "positions: {path: ''}\nserver: {listen: '127.0.0.1:0'}\n")
    loaded = load_configs([otel, extra], env=ENV)
    config = loaded.config
    assert config.loki.url == ENV["LOKI_URL"]  # ${env:LOKI_URL}, as the Collector expands it
    assert (config.loki.basic_auth.username, config.loki.basic_auth.password_file) == \
        ("ops", str(secret))
    assert (config.batch.size, config.batch.timeout) == (500, 2.0)
    assert config.inputs.paths == ("/var/log/pods/*/*/*.log",)
    assert (config.positions.path, config.server.listen) == ("", "127.0.0.1:0")
    [(line, unmapped)] = loaded.converted
    assert unmapped == 1 and "an OpenTelemetry Collector config, converted in memory" in line


def test_a_file_before_the_collector_config_settles_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret")
    extra = write(tmp_path, "extra.yaml", f"loki: {{basic_auth: {{password_file: {secret}}}}}\n")
    with pytest.raises(ConfigError):
        load_configs([extra, write(tmp_path, "otel.yaml", COLLECTOR)], env=ENV)


def test_a_shipper_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping of config sections"):
        load_configs([write(tmp_path, "x.yaml", "- a\n")], env={})


def test_stages_that_did_not_convert_are_settled_by_a_later_pipeline(tmp_path: Path) -> None:
    otel = write(tmp_path, "otel.yaml", """
receivers:
  filelog:
    include: [/var/log/pods/*/*/*.log]
    operators:
      - {type: container}
      - {type: router, routes: [{output: app, expr: 'resource["k8s.namespace.name"] == "shop"'}]}
      - {type: json_parser, id: app}
exporters: {debug: {}}
""")
    with pytest.raises(ConfigError) as error:
        load_configs([otel], env={})
    assert error.value.key == "receivers.filelog.operators[1].routes[0].expr"
    assert "set pipeline in a later --config file" in str(error.value)
    rules = write(tmp_path, "rules.yaml", "pipeline:\n  - match: {namespace: shop}\n"
                  "    stages: [{json: {}}]\n")
    config = load_configs([otel, rules], env={}).config
    assert [(r.match.values, [s.type for s in r.stages]) for r in config.pipeline] == [
        ((("namespace", ("shop",)),), ["json"])]


def test_a_shipper_config_leaves_the_collector_converter_unloaded(tmp_path: Path) -> None:
    """The converter is 0.7 MiB of the agent's memory: loaded only for a Collector config."""
    path = write(tmp_path, "shipper.yaml", "inputs:\n  paths: [/var/log/containers/*.log]\n")
    code = ("import sys; from shipper.config_files import load_configs; import shipper.agent; "
            f"load_configs([{path!r}]); print(sorted(m for m in sys.modules if 'convert.' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['shipper.convert.report', 'shipper.convert.source']"
