"""Each filelog operator converted: the stages it becomes (or that shipper does it natively),
and what does not map, by its path. Behaviour: the converted stages run over sample lines from
the Collector's own docs give what those docs say the operator gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.otelcol import behave, convert, fatal, stages, unmapped


def ns(*when: int) -> int:
    """An instant (UTC) as ns since the epoch."""
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 10**9

OP = "receivers.filelog.operators[1]"  # the first operator after the container operator


def test_container_is_native_and_its_max_log_size_bounds_lines() -> None:
    conversion = convert([], container=False, receiver={"operators": [
        {"type": "container", "id": "container-parser", "max_log_size": 102400}]})
    assert stages(conversion) == []
    assert conversion.data["inputs"]["max_line_bytes"] == 102400
    assert conversion.report.not_mapped == []
    assert "(container): parses Docker, CRI-O and containerd lines" in conversion.text
    assert conversion.data["labels"]["structured_metadata"] == ["pod", "pod_uid", "stream"]


def test_the_raw_line_parsers_of_the_classic_kubernetes_config_are_native() -> None:
    router = {"type": "router", "id": "get-format", "routes": [
        {"output": "parser-docker", "expr": 'body matches "^\\\\{"'},
        {"output": "parser-cri", "expr": 'body matches "^[^ Z]+ "'}]}
    cri = {"type": "regex_parser", "id": "parser-cri", "output": "recombine",
           "regex": "^(?P<time>[^ Z]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$",
           "timestamp": {"parse_from": "attributes.time", "layout_type": "gotime",
                         "layout": "2006-01-02T15:04:05.999999999Z07:00"}}
    docker = {"type": "json_parser", "id": "parser-docker", "output": "move",
              "timestamp": {"parse_from": "attributes.time", "layout": "%Y-%m-%dT%H:%M:%S.%LZ"}}
    recombine = {"type": "recombine", "combine_field": "attributes.log", "combine_with": "",
                 "is_last_entry": "attributes.logtag == 'F'", "output": "move"}
    move = {"type": "move", "from": "attributes.log", "to": "body"}
    conversion = convert([router, cri, docker, recombine, move], container=False)
    assert stages(conversion) == []
    assert conversion.report.not_mapped == []
    assert conversion.text.count("natively") + conversion.text.count("itself") >= 4


def test_json_parser_with_timestamp_and_severity_blocks() -> None:
    conversion = convert([{
        "type": "json_parser",
        "timestamp": {"parse_from": "attributes.ts", "layout_type": "epoch", "layout": "ms"},
        "severity": {"parse_from": "attributes.level",
                     "mapping": {"warn": "w", "error": ["e", 500], "fatal2": "boom"}}}])
    assert stages(conversion) == [
        {"json": {"timestamp": {"source": "ts", "format": "unix_ms"}}},
        {"level": {"field": "level", "mapping": {"w": "warn", "e": "error", "500": "error",
                                                  "boom": "fatal"}}}]
    assert conversion.report.not_mapped == []
    # severity.md: a mapped value, a standard one (the default preset), one that is neither
    out = behave(conversion, ['{"ts": 1136214245123, "level": "W"}', '{"level": "ERROR"}',
                              '{"level": "boom", "user": {"id": 7}}'])
    assert out[0].ts == 1136214245123 * 10**6
    assert [r.field("detected_level") for r in out] == ["warn", "error", "fatal"]
    assert out[2].field("user.id") == "7"  # attributes.user.id, as shipper names a leaf


def test_json_parser_of_a_field_and_into_the_body() -> None:
    # json_parser.md: "Parse the field message as JSON, and parse the timestamp"
    conversion = convert([{"type": "json_parser", "parse_from": "body.message",
                           "parse_to": "body", "timestamp": {
                               "parse_from": "body.seconds_since_epoch", "layout_type": "epoch",
                               "layout": "s"}}])
    assert stages(conversion) == [{"json": {"source": "message", "timestamp": {
        "source": "seconds_since_epoch", "format": "unix"}}}]
    [out] = behave(conversion, ["x"], fields={
        "message": '{"key": "val", "seconds_since_epoch": 1136214245}'})
    assert out.field("key") == "val"
    assert out.ts == ns(2006, 1, 2, 15, 4, 5)  # 1136214245 s (the doc prints it as -07:00)


def test_a_parser_that_drops_what_it_cannot_parse_does_not_map() -> None:
    conversion = convert([{"type": "json_parser", "on_error": "drop"}])
    assert fatal(conversion) == {f"{OP}.on_error"}


def test_regex_parser_with_a_timestamp_from_its_group() -> None:
    # regex_parser.md: "Parse the body with a regular expression and also parse the timestamp"
    conversion = convert([{
        "type": "regex_parser",
        "regex": r"^Time=(?P<timestamp_field>\d{4}-\d{2}-\d{2}), Host=(?P<host>[^,]+), "
                 r"Type=(?P<type>.*)$",
        "timestamp": {"parse_from": "attributes.timestamp_field", "layout_type": "strptime",
                      "layout": "%Y-%m-%d"}}])
    assert stages(conversion) == [{"regex": {
        "expression": r"^Time=(?P<timestamp_field>\d{4}-\d{2}-\d{2}), Host=(?P<host>[^,]+), "
                      r"Type=(?P<type>.*)$",
        "timestamp": {"source": "timestamp_field", "format": "%Y-%m-%d"}}}]
    [out] = behave(conversion, ["Time=2020-01-31, Host=127.0.0.1, Type=HTTP"])
    assert (out.field("host"), out.field("type")) == ("127.0.0.1", "HTTP")
    assert out.ts == ns(2020, 1, 31)


def test_regex_parser_of_a_field_with_an_if() -> None:
    # regex_parser.md: "Parse the message field only if "type" is "hostname""
    conversion = convert([{"type": "regex_parser", "regex": "^Host=(?<host>.*)$",
                           "parse_from": "body.message", "if": 'body.type == "hostname"'}])
    assert stages(conversion) == [{"regex": {"expression": "^Host=(?P<host>.*)$",
                                             "source": "message"},
                                   "when": {"field": "type", "value": "hostname"}}]
    out = behave(conversion, ["a"], fields={"message": "Host=testhost", "type": "hostname"}) + \
        behave(conversion, ["b"], fields={"message": "Key=value", "type": "keypair"})
    assert [r.field("host") for r in out] == ["testhost", None]


def test_key_value_parser_is_logfmt_when_it_reads_key_equals_value_pairs() -> None:
    # key_value_parser.md: "Parse the field message as key value pairs, and parse the timestamp"
    conversion = convert([{"type": "key_value_parser", "timestamp": {
        "parse_from": "seconds_since_epoch", "layout_type": "epoch", "layout": "s"}}])
    assert stages(conversion) == [{"logfmt": {"timestamp": {"source": "seconds_since_epoch",
                                                            "format": "unix"}}}]
    [out] = behave(conversion, ["name=stanza seconds_since_epoch=1136214245"])
    assert out.field("name") == "stanza" and out.ts == 1136214245 * 10**9
    other = convert([{"type": "key_value_parser", "delimiter": ":"}])
    assert "':'" in unmapped(other)[OP] and not fatal(other)


def test_recombine_on_a_first_line_regex_is_multiline() -> None:
    # recombine.md: "Recombine stack traces into multiline logs"
    conversion = convert([{"type": "recombine", "combine_field": "body",
                           "is_first_entry": 'body matches "^[^\\\\s]"'}])
    assert stages(conversion) == [{"multiline": {"first_line": r"^[^\s]", "max_lines": 1000,
                                                 "max_wait": "5s"}}]
    assert [r.line for r in behave(conversion, STACK_TRACE)] == RECOMBINED


# recombine.md's input and output
STACK_TRACE = ["Log message 1", "Error: java.lang.Exception: Stack trace",
               "        at java.lang.Thread.dumpStack(Thread.java:1336)",
               "        at Main.demo3(Main.java:15)", "        at Main.main(Main.java:3)",
               "Another log message"]
RECOMBINED = [STACK_TRACE[0], "\n".join(STACK_TRACE[1:5]), STACK_TRACE[5]]


def test_recombine_variants() -> None:
    negated = convert([{"type": "recombine", "combine_field": "body", "combine_with": "",
                        "max_log_size": "64KiB", "force_flush_period": "1s",
                        "is_first_entry": 'not (body matches "^\\\\s")'}])
    assert stages(negated) == [{"multiline": {"continuation": r"^\s", "separator": "",
                                              "max_lines": 1000, "max_bytes": 65536,
                                              "max_wait": "1s"}}]
    assert [r.line for r in behave(negated, STACK_TRACE)] == [
        line.replace("\n", "") for line in RECOMBINED]
    last = convert([{"type": "recombine", "combine_field": "body",
                     "is_last_entry": 'body matches "END$"'}])
    assert stages(last)[0]["multiline"]["last_line"] == "END$"
    assert [r.line for r in behave(last, ["a", "b END", "c END", "d"])] == [
        "a\nb END", "c END", "d"]
    other_field = convert([{"type": "recombine", "combine_field": "attributes.msg",
                            "is_first_entry": 'body matches "x"'}])
    assert fatal(other_field) == {OP}


# Each operator with an entry before and after, as its doc page shows (line, fields; ts)
BEFORE = ("The log line", {"msg": "The message", "a": "1", "b": "2", "c": "3",
                           "password": "hunter2", "sev": "nooo!", "ts": "Jun 5 13:50:27 2020",
                           "http.status": "200", "http.method": "GET"})


@pytest.mark.parametrize(("op", "stage", "line", "changed"), [
    ({"type": "move", "from": "attributes.msg", "to": "body"},
     {"move": {"from": "msg", "to": "line"}}, "The message", {"msg": None}),
    ({"type": "move", "from": "body", "to": "attributes.original"},
     {"move": {"from": "line", "to": "original"}}, "", {"original": "The log line"}),
    ({"type": "copy", "from": "attributes.a", "to": "attributes.z"},
     {"copy": {"from": "a", "to": "z"}}, None, {"z": "1"}),
    ({"type": "add", "field": "attributes.env", "value": "prod"},
     {"set": {"fields": {"env": "prod"}}}, None, {"env": "prod"}),
    ({"type": "add", "field": "resource.team", "value": {"name": "core", "oncall": True}},
     {"set": {"fields": {"team.name": "core", "team.oncall": "true"}}}, None,
     {"team.name": "core", "team.oncall": "true"}),
    ({"type": "remove", "field": "attributes.password"}, {"remove": {"fields": ["password"]}},
     None, {"password": None}),
    ({"type": "flatten", "field": "attributes.http"}, {"flatten": {"field": "http"}}, None,
     {"http.status": None, "http.method": None, "status": "200", "method": "GET"}),
    ({"type": "regex_replace", "regex": "(log) (line)", "replace_with": "$2 ${1}"},
     {"replace": {"regex": "(log) (line)", "replacement": "\\g<2> \\g<1>"}}, "The line log", {}),
    ({"type": "severity_parser", "parse_from": "attributes.sev", "mapping": {"error": "nooo!"}},
     {"level": {"field": "sev", "mapping": {"nooo!": "error"}}}, None,
     {"detected_level": "error"}),
    ({"type": "time_parser", "parse_from": "attributes.ts", "layout_type": "gotime",
      "layout": "Jan 2 15:04:05 2006"},
     {"timestamp": {"source": "ts", "format": "%b %d %H:%M:%S %Y"}}, None, {}),
])
def test_field_operators_become_field_stages(op: dict[str, object], stage: dict[str, object],
                                             line: str | None,
                                             changed: dict[str, str | None]) -> None:
    conversion = convert([op])
    assert stages(conversion) == [stage]
    assert conversion.report.not_mapped == []
    [out] = behave(conversion, [BEFORE[0]], fields=BEFORE[1])
    assert out.line == (BEFORE[0] if line is None else line)
    expected = {**BEFORE[1], **changed}
    assert out.fields == {k: v for k, v in expected.items() if v is not None}
    if op["type"] == "time_parser":  # timestamp.md: "Parse a timestamp using a gotime layout"
        assert out.ts == ns(2020, 6, 5, 13, 50, 27)


def test_retain_keeps_the_fields_named() -> None:
    conversion = convert([{"type": "retain", "fields": ["attributes.a", "body.b"]}])
    assert stages(conversion) == [{"retain": {"fields": ["a", "b"]}}]
    [out] = behave(conversion, [BEFORE[0]], fields=BEFORE[1])
    assert (out.line, out.fields) == (BEFORE[0], {"a": "1", "b": "2"})


def test_kubernetes_attributes_are_renamed_or_removed_by_name_not_by_stage() -> None:
    renamed = convert([{"type": "move", "from": 'resource["k8s.namespace.name"]',
                        "to": "resource.namespace"}])
    assert stages(renamed) == [] and renamed.report.not_mapped == []
    removed = convert([{"type": "remove", "field": 'resource["k8s.pod.uid"]'}])
    assert stages(removed) == []
    assert "pod_uid" not in removed.data["labels"]["structured_metadata"]


def test_add_with_an_expression_does_not_map() -> None:
    conversion = convert([{"type": "add", "field": "attributes.k",
                           "value": 'EXPR(body.key1 + "_suffix")'}])
    assert f"{OP}.value" in unmapped(conversion) and not fatal(conversion)


def test_filter_is_a_drop_stage() -> None:
    # filter.md: "Filter entries based on a label value"
    conversion = convert([{"type": "filter", "expr": 'attributes.env == "production"'}])
    assert stages(conversion) == [{"drop": {"field": "env", "value": "production"}}]
    kept = behave(conversion, ["a"], fields={"env": "production"}) + \
        behave(conversion, ["b"], fields={"env": "staging"}) + behave(conversion, ["c"])
    assert [r.line for r in kept] == ["b", "c"]
    sampled = convert([{"type": "filter", "expr": "body matches 'x'", "drop_ratio": 0.5}])
    assert fatal(sampled) == {f"{OP}.drop_ratio"}
    environment = convert([{"type": "filter", "expr": 'body.message == env("X")'}])
    assert fatal(environment) == {f"{OP}.expr"}


def test_a_router_puts_each_routes_condition_on_its_stages() -> None:
    # router.md: "Forward entries to different parsers based on content", merging after
    conversion = convert([
        {"type": "router", "routes": [
            {"output": "as_json", "expr": 'body matches "^\\\\{"'},
            {"output": "as_kv", "expr": 'body matches "="'}], "default": "done"},
        {"type": "json_parser", "id": "as_json", "output": "done"},
        {"type": "key_value_parser", "id": "as_kv", "output": "done"},
        {"type": "add", "id": "done", "field": "attributes.routed", "value": "yes"}])
    json_route = {"line": "^\\{"}
    assert stages(conversion) == [
        {"json": {}, "when": json_route},
        {"logfmt": {}, "when": {"all": [{"line": "="}, {"not": json_route}]}},
        {"set": {"fields": {"routed": "yes"}}}]
    out = behave(conversion, ['{"a": "x=1"}', "a=2", "plain"])
    assert [(r.field("a"), r.field("routed")) for r in out] == [("x=1", "yes"), ("2", "yes"),
                                                                (None, "yes")]


def test_a_route_whose_operator_writes_what_the_routes_read_is_marked() -> None:
    conversion = convert([
        {"type": "router", "id": "by-format", "routes": [
            {"output": "as_json", "expr": 'attributes.format == "json"'},
            {"output": "as_kv", "expr": 'attributes.format == "kv"'}], "default": "done"},
        {"type": "json_parser", "id": "as_json", "parse_from": "attributes.data",
         "output": "done"},
        {"type": "key_value_parser", "id": "as_kv", "parse_from": "attributes.data",
         "output": "done"},
        {"type": "noop", "id": "done"}])
    assert stages(conversion)[-3:] == [
        {"json": {"source": "data"}, "when": {"field": "otel_route_by_format",
                                              "value": "as_json"}},
        {"logfmt": {"source": "data"}, "when": {"field": "otel_route_by_format",
                                                "value": "as_kv"}},
        {"remove": {"fields": ["otel_route_by_format"]}}]
    # The JSON route's data sets format=kv: the entry still takes one route only.
    [out] = behave(conversion, ["x"], fields={"format": "json",
                                              "data": '{"format": "kv", "data": "b=2"}'})
    assert out.fields == {"format": "kv", "data": "b=2"}


def test_a_router_without_default_drops_what_no_route_takes() -> None:
    conversion = convert([
        {"type": "router", "routes": [{"output": "keep", "expr": 'body matches "^LOG: "'}]},
        {"type": "noop", "id": "keep"}])
    assert stages(conversion) == [{"drop": {"not": {"line": "^LOG: "}}}]
    assert [r.line for r in behave(conversion, ["LOG: a", "other", "LOG: b"])] == [
        "LOG: a", "LOG: b"]


def test_a_route_of_several_stages_is_marked_in_a_field() -> None:
    conversion = convert([
        {"type": "router", "id": "by-type", "routes": [
            {"output": "p1", "expr": 'body matches "^{"'}], "default": "end"},
        {"type": "json_parser", "id": "p1"},
        {"type": "move", "from": "attributes.msg", "to": "body", "output": "end"},
        {"type": "noop", "id": "end"}])
    marked = {"field": "otel_route_by_type", "value": "p1"}
    assert stages(conversion) == [
        {"set": {"fields": {"otel_route_by_type": "end"}},
         "when": {"not": {"line": "^{"}}},
        {"set": {"fields": {"otel_route_by_type": "p1"}}, "when": {"line": "^{"}},
        {"json": {}, "when": marked},
        {"move": {"from": "msg", "to": "line"}, "when": marked},
        {"remove": {"fields": ["otel_route_by_type"]}}]
    # The move runs on the JSON route even though the json stage changed what its condition
    # would read; the marker is gone from what is shipped.
    out = behave(conversion, ['{"msg": "hello {braces}"}', "plain"])
    assert [(r.line, r.fields) for r in out] == [("hello {braces}", None), ("plain", None)]


def test_a_router_on_metadata_does_not_map() -> None:
    conversion = convert([{"type": "router", "routes": [
        {"output": "x", "expr": 'resource["k8s.namespace.name"] == "shop"'}]},
        {"type": "noop", "id": "x"}])
    assert fatal(conversion) == {f"{OP}.routes[0].expr"}


def test_severity_ranges_do_not_map_but_the_rest_does() -> None:
    # severity.md: "Parse a severity from a HTTP Status Codes value"
    conversion = convert([{"type": "severity_parser", "parse_from": "attributes.status",
                           "mapping": {"warn": "5xx", "error": "4xx", "info": [{"min": 300,
                                                                              "max": 399}],
                                       "debug": "ok"}}])
    assert stages(conversion) == [{"level": {"field": "status", "mapping": {"ok": "debug"}}}]
    assert set(unmapped(conversion)) == {f"{OP}.mapping.warn", f"{OP}.mapping.error",
                                         f"{OP}.mapping.info"}
    assert not fatal(conversion)


def test_unknown_operators_do_not_map_and_stop_a_run_if_they_could_drop() -> None:
    conversion = convert([{"type": "csv_parser", "header": "a,b"}, {"type": "frobnicate"}])
    assert set(unmapped(conversion)) == {OP, "receivers.filelog.operators[2]"}
    assert fatal(conversion) == {"receivers.filelog.operators[2]"}


def test_the_receivers_multiline_block_is_a_multiline_stage_first() -> None:
    # filelogreceiver README: "Example - Multiline logs parsing"
    conversion = convert([{"type": "json_parser"}], receiver={
        "multiline": {"line_start_pattern": "^Exception"}})
    assert stages(conversion)[0] == {"multiline": {"first_line": "^Exception",
                                                   "max_wait": "500ms"}}
    trace = ['Exception in thread 1 "main" java.lang.NullPointerException',
             "        at com.example.myproject.Book.getTitle(Book.java:16)",
             'Exception in thread 2 "main" java.lang.NullPointerException',
             "        at com.example.myproject.Bootstrap.main(Bootstrap.java:44)"]
    grouped = behave(convert([], receiver={"multiline": {"line_start_pattern": "^Exception"}}),
                     trace)
    assert [r.line for r in grouped] == ["\n".join(trace[:2]), "\n".join(trace[2:])]
