"""Labels with their cardinality guard, tenants, and rate limits per stream."""

from __future__ import annotations

import logging

import pytest

from shipper.metrics import Metrics
from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.config import LabelsConfig, RateLimitConfig, TenantConfig
from shipper.pipeline.rate import RateLimitSpec
from shipper.pipeline.record import Env, Record, StreamInfo
from shipper.pipeline.routing import LabelsSpec, TenantSpec

STREAM = Stream('{app="a"}', (("app", "a"),))
INFO = StreamInfo(STREAM, "stdout", namespace="shop", pod="api-0",
                  pod_labels={"team": "payments"}, pod_annotations={"acme.io/tenant": "acme"})


def record(**fields: str) -> Record:
    return Record(0, "x", Ticket(FileId(1, 1), 0), dict(fields) or None)


def test_labels_are_promoted_until_the_cap_then_stay_metadata_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stage = LabelsSpec(LabelsConfig((("level", "detected_level"),), max_values=2),
                       metrics).build(INFO)
    env = Env(0.0, 0)
    out = []
    for value in ("info", "error", "info", "warn", "debug"):
        r = record(detected_level=value)
        assert stage.apply(r, env)
        out.append((r.labels, r.fields))
    assert out[:3] == [({"level": "info"}, {}), ({"level": "error"}, {}),
                       ({"level": "info"}, {})]
    assert out[3:] == [(None, {"detected_level": "warn"}), (None, {"detected_level": "debug"})]
    assert metrics.registry.get_sample_value("shipper_pipeline_label_overflow_total",
                                             {"label": "level"}) == 2
    assert caplog.text.count("reached its cap") == 1


def test_an_empty_value_is_never_a_label() -> None:
    stage = LabelsSpec(LabelsConfig((("user", "user"),)), Metrics()).build(INFO)
    r = record(user="")
    stage.apply(r, Env(0.0, 0))
    assert r.labels is None and r.fields == {"user": ""}


@pytest.mark.parametrize(("config", "tenant"), [
    (TenantConfig(value="ops"), "ops"),
    (TenantConfig(pod_label="team"), "payments"),
    (TenantConfig(pod_annotation="acme.io/tenant"), "acme"),
    (TenantConfig(namespace=True), "shop"),
    (TenantConfig(pod_label="missing", default="fallback"), "fallback"),
    (TenantConfig(pod_label="missing"), None),  # None: loki.tenant_id
])
def test_tenant_from_each_source(config: TenantConfig, tenant: str | None) -> None:
    r = record()
    TenantSpec(config).build(INFO).apply(r, Env(0.0, 0))
    assert r.tenant == tenant


def test_tenant_from_a_field_refuses_what_loki_would_and_counts_it() -> None:
    stage = TenantSpec(TenantConfig(field="org", default="other")).build(INFO)
    env = Env(0.0, 0)
    good, bad, missing = record(org="team-a"), record(org="a/b"), record()
    for r in (good, bad, missing):
        stage.apply(r, env)
    assert (good.tenant, bad.tenant, missing.tenant) == ("team-a", "other", "other")
    assert env.failed == {"tenant": 1}


def test_an_invalid_tenant_from_a_pod_label_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    info = StreamInfo(STREAM, "stdout", pod_labels={"team": "a|b"})
    r = record()
    TenantSpec(TenantConfig(pod_label="team")).build(info).apply(r, Env(0.0, 0))
    assert r.tenant is None and "invalid tenant" in caplog.text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_drop_passes_the_burst_then_the_rate_per_stream() -> None:
    clock = Clock()
    spec = RateLimitSpec(RateLimitConfig(10.0, burst=5, action="drop"), clock)
    bucket = spec.build(INFO)
    env = Env(0.0, 0)
    assert [bucket.apply(record(), env) for _ in range(8)] == [True] * 5 + [False] * 3
    assert bucket.reason == "rate_limited"
    clock.now += 0.5  # five more tokens
    assert sum(bucket.apply(record(), env) for _ in range(10)) == 5
    other = StreamInfo(Stream('{app="b"}', (("app", "b"),)), "stdout")
    assert spec.build(other) is not bucket and spec.build(INFO) is bucket


def test_rate_limit_hold_keeps_every_line_and_asks_the_reader_to_wait() -> None:
    clock = Clock()
    bucket = RateLimitSpec(RateLimitConfig(100.0, burst=10, action="hold"), clock).build(INFO)
    env = Env(0.0, 0)
    assert all(bucket.apply(record(), env) for _ in range(60))
    assert env.delay == pytest.approx(0.5)  # 50 lines past the burst at 100 a second
    clock.now += 0.5
    later = Env(0.0, 0)
    assert bucket.apply(record(), later) and later.delay == pytest.approx(0.01)
