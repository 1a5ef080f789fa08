"""Which stages a stream gets: rule selectors, pod annotations around the rules, stages kept
(with their open groups) while what selects them is unchanged."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from shipper.enrich import FileStreams
from shipper.metrics import Metrics
from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.compile import Pipeline
from shipper.pipeline.config import read_pipeline
from shipper.pipeline.record import Env

OUT = Stream('{app="api"}', (("app", "api"),), (("stream", "stdout"),))
ERR = Stream('{app="api"}', (("app", "api"),), (("stream", "stderr"),))
RULES = [
    {"name": "shop", "match": {"namespace": "shop*", "container": ["api", "web"]},
     "stages": [{"drop": {"line": "healthz"}}]},
    {"name": "errors", "match": {"stream": "stderr", "labels": {"team": "pay*"}},
     "stages": [{"set": {"fields": {"alert": "yes"}}}]},
]


def streams(namespace: str = "shop", container: str = "api",
            labels: Mapping[str, str] | None = None,
            annotations: Mapping[str, str] | None = None) -> FileStreams:
    values = {"namespace": namespace, "pod": "api-0", "container": container, "app": "api",
              "workload": "api", "node": "n1"}
    return FileStreams(OUT, ERR, False, True, 0, values, labels or {}, annotations or {})


def names(pipeline: Pipeline, s: FileStreams, output: str = "stdout") -> list[str]:
    files, _ = pipeline.for_file(s, None)
    assert files is not None
    stream = getattr(files, output)
    return [n.name for n in pipeline.select(stream.info)[1]]


def make(rules: list[dict[str, object]] = RULES, annotations: bool = True) -> Pipeline:
    return Pipeline(read_pipeline(rules), Metrics(), annotations=annotations)


def test_rules_are_selected_by_their_match() -> None:
    pipeline = make()
    assert names(pipeline, streams()) == ["pipeline[0].stages[0] drop"]
    assert names(pipeline, streams(labels={"team": "payments"}), "stderr") == [
        "pipeline[0].stages[0] drop", "pipeline[1].stages[0] set"]
    assert names(pipeline, streams(labels={"team": "ops"}), "stderr") == [
        "pipeline[0].stages[0] drop"]
    assert pipeline.for_file(streams(namespace="kube-system"), None)[0] is None  # no stage
    assert pipeline.for_file(streams(container="sidecar"), None)[0] is None


def test_annotations_come_before_the_rules_and_the_tenant_after() -> None:
    pipeline = make()
    got = names(pipeline, streams(annotations={
        "shipper.io/tenant": "team-a", "shipper.io/multiline": "java",
        "shipper.io/parser": "json", "shipper.io/drop": "DEBUG"}))
    assert got == ["annotation shipper.io/multiline", "annotation shipper.io/parser",
                   "annotation shipper.io/drop", "pipeline[0].stages[0] drop",
                   "annotation shipper.io/tenant"]
    assert make(annotations=False).for_file(
        streams(namespace="x", annotations={"shipper.io/parser": "json"}), None)[0] is None


@pytest.mark.parametrize(("annotation", "value"), [
    ("shipper.io/multiline", "(unclosed"), ("shipper.io/parser", "xml"),
    ("shipper.io/drop", "[a-"), ("shipper.io/tenant", "a/b")])
def test_a_bad_annotation_is_logged_once_per_pod_counted_and_ignored(
        annotation: str, value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    metrics = Metrics()
    pipeline = Pipeline(read_pipeline(RULES), metrics, annotations=True)
    bad = streams(annotations={annotation: value})
    for _ in range(3):
        assert names(pipeline, bad) == ["pipeline[0].stages[0] drop"]  # the rest still runs
    assert caplog.text.count("ignoring a bad pipeline annotation") == 1
    assert metrics.registry.get_sample_value("shipper_pipeline_bad_annotations_total") == 1


def test_unchanged_stages_are_kept_with_their_open_group_and_changed_ones_retired() -> None:
    pipeline = make()
    first, retired = pipeline.for_file(streams(annotations={"shipper.io/multiline": "^S"}),
                                       None)
    assert first is not None and not retired
    ticket = Ticket(FileId(1, 1), 10)
    first.run([(1, b"S start", OUT), (2, b" more", OUT)], ticket, Env(0.0, 0))
    assert first.held() == [ticket]  # a group is open
    # The pod cache changed (another pod, a label): same selection, same stages, group kept.
    again, retired = pipeline.for_file(streams(labels={"x": "y"}, annotations={
        "shipper.io/multiline": "^S"}), first)
    assert again is not None and again.stdout is first.stdout and not retired
    assert again.held() == [ticket]
    # The annotation changed: new stages; the old stream's stages are handed back to flush.
    changed, retired = pipeline.for_file(streams(annotations={"shipper.io/multiline": "^X"}),
                                         again)
    assert changed is not None and changed.stdout is not first.stdout
    assert retired == [first.stdout, first.stderr]  # the annotation applies to both
