"""Config: defaults that suit the DaemonSet, strict errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.__main__ import main
from shipper.config import ConfigError, load_config, parse_config


def test_empty_config_gives_daemonset_defaults() -> None:
    config = parse_config("", env={})
    assert config.inputs.paths == ("/var/log/containers/*.log",)
    assert config.positions.path == "/var/lib/shipper/positions.json"
    assert config.loki.url == "http://loki:3100/loki/api/v1/push"
    assert (config.batch.size, config.batch.timeout, config.batch.max_bytes) == (100, 10.0, 1048576)
    assert config.server.listen == "0.0.0.0:9080"
    assert config.labels.stream == ("namespace", "container", "app")
    assert config.labels.structured_metadata == ("pod", "node", "stream")
    assert (config.kubernetes.startup_wait, config.kubernetes.pod_wait) == (10.0, 5.0)
    assert not config.dry_run


def test_units_are_parsed() -> None:
    config = parse_config("batch: {timeout: 1.5s, max_bytes: 2MiB, max_pending_bytes: 64MiB}\n"
                          "loki: {max_backoff: 5m, min_backoff: 250ms}", env={})
    assert config.batch.timeout == 1.5
    assert config.batch.max_bytes == 2 * 1024 * 1024
    assert (config.loki.max_backoff, config.loki.min_backoff) == (300.0, 0.25)


def test_environment_overrides() -> None:
    config = parse_config("loki: {url: http://a:3100/x/push}",
                          env={"SHIPPER_LOKI_URL": "http://b:3100/y/push", "NODE_NAME": "n1"})
    assert config.loki.url == "http://b:3100/y/push"
    assert config.kubernetes.node_name == "n1"
    assert parse_config("", env={"SHIPPER_LOKI_URL": ""}).dry_run


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("batch: {sise: 10}", "batch.sise", "unknown key"),
    ("nope: 1", "nope", "unknown key"),
    ("batch: {timeout: soon}", "batch.timeout", "duration"),
    ("batch: {timeout: -1s}", "batch.timeout", "duration"),
    ("kubernetes: {startup_wait: 0s}", "kubernetes.startup_wait", "positive"),
    ("kubernetes: {pod_wait: later}", "kubernetes.pod_wait", "duration"),
    ("batch: {size: many}", "batch.size", "positive integer"),
    ("batch: {size: 0}", "batch.size", "positive integer"),
    ("batch: {max_bytes: 1XB}", "batch.max_bytes", "size"),
    ("inputs: {paths: /var/log/*.log}", "inputs.paths", "list of strings"),
    ("loki: {url: 'loki:3100'}", "loki.url", "http"),
    ("loki: {tls: {insecure_skip_verify: maybe}}", "loki.tls.insecure_skip_verify",
     "true or false"),
    ("labels: {stream: [namespace, colour]}", "labels.stream", "colour"),
    ("server: {listen: 9080}", "server.listen", "string"),
    ("log: {level: loud}", "log.level", "one of"),
    ("batch: [1, 2]", "batch", "mapping"),
    ("batch: {max_bytes: 2MiB, max_pending_bytes: 1MiB}", "batch.max_pending_bytes", "at least"),
])
def test_bad_config_names_key_and_reason(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert info.value.key == key
    assert reason in info.value.reason


@pytest.mark.parametrize("url", [
    "http://loki:3100", "http://loki:3100/", "https://loki.example", "http://loki:3100/loki",
    "http://loki:3100/loki/api/v1", "http://loki:3100/loki/api/v1/push/",
    "http://loki:3100/loki?to=/push", "http://loki:3100/pushy",
])
def test_a_loki_url_without_the_push_path_fails_at_start_naming_it(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"loki: {{url: '{url}'}}", env={})
    assert info.value.key == "loki.url"
    assert "http://loki:3100/loki/api/v1/push" in info.value.reason
    assert "does not end in /push" in info.value.reason
    with pytest.raises(ConfigError, match=r"'loki\.url'"):  # from the environment too
        parse_config("", env={"SHIPPER_LOKI_URL": url})


@pytest.mark.parametrize("url", [
    "http://loki:3100/loki/api/v1/push", "https://logs.example/api/prom/push",
    "https://gateway.example/tenant-a/loki/api/v1/push?org=a", "http://[::1]:3100/push", "",
])
def test_a_push_path_of_loki_or_a_gateway_is_accepted(url: str) -> None:
    assert parse_config(f"loki: {{url: '{url}'}}", env={}).loki.url == url


@pytest.mark.parametrize(("url", "says"), [
    ("http://loki:99999/loki/api/v1/push", "out of range"),
    ("http://loki:port/loki/api/v1/push", "port"),
])
def test_a_loki_url_with_a_bad_port_fails_at_start(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"'loki.url': .*{says}"):
        parse_config(f"loki: {{url: '{url}'}}", env={})


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("batch: {", env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"batch: {{size: 500}}\npositions: {{path: {tmp_path / 'p.json'}}}\n"
                    "server: {listen: '127.0.0.1:0'}\n")  # check-config binds it
    assert main(["check-config", "--config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch: {timeout: forever}\n")
    with pytest.raises(SystemExit) as info:
        main(["check-config", "--config", str(bad)])
    assert info.value.code == 2
    assert "config key 'batch.timeout'" in capsys.readouterr().err
