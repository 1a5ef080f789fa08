"""Inputs that are not a Collector config, or are one written wrongly: a clear message with the
path, an exit code (2: not a Collector config; 1: something could not be mapped), and never a
traceback, whatever the document."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipper.__main__ import main
from shipper.convert.otelcol import convert_otelcol
from shipper.convert.source import NotCollector

LOKI = "exporters: {loki: {endpoint: 'http://loki:3100/loki/api/v1/push'}}\n"


def convert(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    source = tmp_path / "otel.yaml"
    source.write_text(text)
    code = main(["convert", "otelcol", str(source)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    ("receivers: [filelog\n", "not valid YAML at line 2"),
    ("", "not an OpenTelemetry Collector config"),
    ("inputs: {paths: [/x]}\n", "not an OpenTelemetry Collector config"),
    ("- receivers\n", "not an OpenTelemetry Collector config: expected top-level receivers, "
                      "exporters and service, got list"),
    ("receivers: {otlp: {}}\nexporters: {debug: {}}\nservice: {pipelines: {metrics: "
     "{receivers: [otlp], exporters: [debug]}, traces: {receivers: [otlp], exporters: "
     "[debug]}}}\n", "no logs pipeline (service.pipelines has metrics, traces)"),
    ("kind: ConfigMap\ndata: {relay: 'receivers: {}'}\n", "pass the value of its data key "
                                                          "(relay) as the file"),
    ("receivers: {}\nservice: {pipelines: {logs: 5}}\n",
     "service.pipelines.logs: expected a mapping, got 5"),
])
def test_not_a_collector_config_exits_2_saying_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    code, err = convert(tmp_path, text, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_an_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", "otelcol", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(("receiver", "path", "reason"), [
    ("{include: [/x/*.log], operators: [{type: json_parser}, {type: frobnicate}]}",
     "receivers.filelog.operators[1]", "no shipper stage does what 'frobnicate' does "
                                       "(set pipeline in a second --config) [changes which "
                                       "lines are shipped]"),
    ("{include: 5}", "receivers.filelog.include", "expected a list, got 5"),
    ("{include: [/x/*.log], operators: nope}", "receivers.filelog.operators",
     "expected a list, got 'nope'"),
    ("{include: [/x/*.log], operators: [{id: x}]}", "receivers.filelog.operators[0]",
     "expected an operator with a type"),
    ("{include: [/x/*.log], operators: [{type: regex_parser, regex: '(?P<a>['}]}",
     "receivers.filelog.operators[0].regex", "not a regex Python reads"),
    ("{include: [/x/*.log], max_log_size: lots}", "receivers.filelog.max_log_size",
     "expected a size such as 1048576 or 1MiB, got 'lots'"),
    ("{include: [/x/*.log], max_log_size: 0}", "receivers.filelog.max_log_size",
     "size must be positive"),
])
def test_a_wrong_construct_is_reported_by_its_path_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], receiver: str, path: str,
        reason: str) -> None:
    code, err = convert(tmp_path, f"receivers: {{filelog: {receiver}}}\n{LOKI}", capsys)
    assert code == 1
    assert f"  {path}: " in err and reason in err, err
    assert "Traceback" not in err


def test_wrong_processor_values_are_reported_by_their_paths(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("receivers: {filelog: {include: [/x/*.log]}}\n"
            "processors: {batch: {send_batch_size: many, timeout: soon}}\n" + LOKI)
    code, err = convert(tmp_path, text, capsys)
    assert code == 1
    assert "processors.batch.send_batch_size: 'many'" in err


def test_running_an_unknown_operator_is_an_error_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "otel.yaml"
    source.write_text("receivers: {filelog: {include: [/x/*.log], operators: "
                      "[{type: frobnicate}]}}\n" + LOKI)
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", "--config", str(source)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "config key 'receivers.filelog.operators[0]': no shipper stage does what " \
           "'frobnicate' does: running" in err


# -- never a traceback: random documents in the Collector's vocabulary -----------------------

_WORDS = ["receivers", "processors", "exporters", "service", "pipelines", "logs", "filelog",
          "filelog/x", "loki", "otlphttp", "debug", "include", "exclude", "operators", "type",
          "id", "output", "routes", "expr", "default", "parse_from", "parse_to", "regex",
          "timestamp", "severity", "layout", "layout_type", "mapping", "from", "to", "field",
          "value", "fields", "json_parser", "regex_parser", "router", "filter", "recombine",
          "move", "add", "remove", "copy", "retain", "flatten", "container", "time_parser",
          "severity_parser", "key_value_parser", "is_first_entry", "combine_field",
          "attributes", "resource", "k8sattributes", "extract", "metadata", "labels", "key",
          "action", "from_attribute", "batch", "memory_limiter", "limit_mib", "endpoint",
          "headers", "auth", "authenticator", "extensions", "multiline", "line_start_pattern",
          "storage", "start_at", "max_log_size", "log_record", "actions", "telemetry"]
_SCALARS = st.one_of(
    st.sampled_from(_WORDS), st.none(), st.booleans(), st.integers(-5, 10**6),
    st.floats(allow_nan=False), st.text(max_size=12),
    st.sampled_from(['body matches "^\\\\{"', 'attributes.x == "y"', "not (", "IsMatch(body,",
                     "attributes.time", 'resource["k8s.pod.name"]', "%Y-%m-%d", "2006-01-02",
                     "(?P<a>x)", "${env:X}", "10s", "1MiB", "s", "epoch", "gotime",
                     "severity_number < SEVERITY_NUMBER_WARN", "http://l:1/otlp", "[", "$$"]))
_DOCS = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(_WORDS), inner, max_size=5)), max_leaves=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["receivers", "processors", "exporters", "service",
                                        "extensions"]), _DOCS, min_size=1))
def test_random_collector_shaped_documents_never_raise(doc: dict[str, object]) -> None:
    try:
        conversion = convert_otelcol(yaml.safe_dump(doc))
    except NotCollector:
        return
    assert (yaml.safe_load(conversion.text) or {}) == conversion.data


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises(text: str) -> None:
    with contextlib.suppress(NotCollector):
        convert_otelcol(text)


_OPERATORS = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["json_parser", "regex_parser", "router", "filter", "recombine",
                              "move", "add", "remove", "copy", "retain", "flatten",
                              "container", "time_parser", "severity_parser", "noop",
                              "key_value_parser", "regex_replace", "csv_parser"])},
    optional={k: _DOCS for k in ("id", "output", "routes", "expr", "default", "parse_from",
                                 "parse_to", "regex", "timestamp", "severity", "from", "to",
                                 "field", "value", "fields", "if", "on_error",
                                 "is_first_entry", "is_last_entry", "combine_field",
                                 "mapping", "layout", "layout_type")}), max_size=6)
_PROCESSORS = st.dictionaries(
    st.sampled_from(["batch", "resource", "attributes", "k8sattributes", "memory_limiter",
                     "filter", "filter/x", "transform"]), _DOCS, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_OPERATORS, _PROCESSORS, _DOCS, st.booleans())
def test_random_operator_chains_and_processors_never_raise(
        operators: list[dict[str, object]], processors: dict[str, object], exporter: object,
        with_service: bool) -> None:
    doc: dict[str, object] = {
        "receivers": {"filelog": {"include": ["/var/log/pods/*/*/*.log"],
                                  "operators": operators}},
        "processors": processors,
        "exporters": {"loki": exporter, "otlphttp": exporter}}
    if with_service:
        doc["service"] = {"pipelines": {"logs": {"receivers": ["filelog"],
                                                 "processors": list(processors),
                                                 "exporters": ["loki"]}}}
    conversion = convert_otelcol(yaml.safe_dump(doc))
    assert (yaml.safe_load(conversion.text) or {}) == conversion.data
