"""Routing stages: which Loki stream (labels) and which tenant a record goes to."""

from __future__ import annotations

import logging

from prometheus_client import Counter

from shipper.metrics import Metrics
from shipper.pipeline.config import LabelsConfig, TenantConfig, valid_tenant
from shipper.pipeline.record import Env, Record, StreamInfo

log = logging.getLogger(__name__)


class LabelsSpec:
    """`labels`: promote fields to stream labels. Each label may take at most `max_values`
    distinct values on this node (a label with unbounded values multiplies streams, and Loki
    refuses a tenant's streams past its limit, 5,000 by default); a value past the cap stays a
    field (so structured metadata), counted, and logged once per label. Shared by every stream:
    the cap is per node."""

    reason = "pipeline_drop"  # never drops

    def __init__(self, config: LabelsConfig, metrics: Metrics) -> None:
        self._fields = config.fields  # (label, field)
        self._max = config.max_values
        self._seen: dict[str, set[str]] = {label: set() for label, _ in config.fields}
        self._overflow: dict[str, Counter] = {}  # its counter child, once a label overflowed
        self._metrics = metrics

    def build(self, info: StreamInfo) -> LabelsSpec:
        return self

    def apply(self, record: Record, env: Env) -> bool:
        fields = record.fields
        if fields is None:
            return True
        for label, name in self._fields:
            value = fields.get(name)
            if not value:  # Loki ignores a label with an empty value
                continue
            seen = self._seen[label]
            if value in seen or len(seen) < self._max:
                seen.add(value)
                del fields[name]
                if record.labels is None:
                    record.labels = {label: value}
                else:
                    record.labels[label] = value
            else:
                self._over(label, value)
        return True

    def _over(self, label: str, value: str) -> None:
        counter = self._overflow.get(label)
        if counter is None:
            log.warning("label has reached its cap of distinct values; further values ship as "
                        "structured metadata", extra={"label": label, "max_values": self._max,
                                                      "value": value})
            counter = self._overflow[label] = self._metrics.pipeline_label_overflow.labels(label)
        counter.inc()


class _FixedTenant:
    """The tenant of every record of a stream, known when the stream's stages are built."""

    reason = "pipeline_drop"

    def __init__(self, tenant: str | None) -> None:
        self._tenant = tenant

    def apply(self, record: Record, env: Env) -> bool:
        record.tenant = self._tenant
        return True


class _FieldTenant:
    reason = "pipeline_drop"

    def __init__(self, field: str, default: str | None) -> None:
        self._field = field
        self._default = default

    def apply(self, record: Record, env: Env) -> bool:
        tenant = record.field(self._field)
        if tenant is not None and not valid_tenant(tenant):
            env.fail("tenant")
            tenant = None
        record.tenant = self._default if tenant is None else tenant
        return True


class TenantSpec:
    """`tenant`: the X-Scope-OrgID of a record's push: a constant, a pod label or annotation,
    the namespace (all fixed per stream), or a field. Missing or invalid: `default`, else
    loki.tenant_id."""

    def __init__(self, config: TenantConfig) -> None:
        self._config = config
        self._default = config.default or None

    def build(self, info: StreamInfo) -> _FixedTenant | _FieldTenant:
        c = self._config
        if c.field:
            return _FieldTenant(c.field, self._default)
        if c.value:
            tenant: str | None = c.value
        elif c.pod_label:
            tenant = info.pod_labels.get(c.pod_label)
        elif c.pod_annotation:
            tenant = info.pod_annotations.get(c.pod_annotation)
        else:
            tenant = info.namespace or None
        if tenant is not None and not valid_tenant(tenant):
            log.warning("invalid tenant for a stream; using the default",
                        extra={"tenant": tenant, "namespace": info.namespace, "pod": info.pod})
            tenant = None
        return _FixedTenant(self._default if tenant is None else tenant)
