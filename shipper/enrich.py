"""Enrich stage: turn a file's path and its pod's metadata into Loki streams and metadata."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from shipper.config import LabelsConfig
from shipper.kube.pod_path import PathMeta, workload_from_pod_name
from shipper.model import Stream

if TYPE_CHECKING:
    from shipper.kube.pod_cache import PodCache, PodMeta

_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_EMPTY: Mapping[str, str] = MappingProxyType({})
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def sanitize_label_name(name: str) -> str:
    """Loki label names must match [a-zA-Z_][a-zA-Z0-9_]*: app.kubernetes.io/name ->
    app_kubernetes_io_name, 2fa -> _2fa."""
    clean = _INVALID_NAME_CHARS.sub("_", name)
    return clean if clean and not clean[0].isdigit() else "_" + clean


def render_labels(pairs: tuple[tuple[str, str], ...]) -> str:
    """The label string Loki parses: values escaped so that no quote, backslash or newline in a
    value can end the string early or inject another label."""
    return "{" + ", ".join(f'{n}="{v.translate(_VALUE_ESCAPES)}"' for n, v in pairs) + "}"


@dataclass(frozen=True, slots=True)
class FileStreams:
    """Where one file's entries go, per output stream of the container."""

    stdout: Stream
    stderr: Stream
    excluded: bool  # the pod or container opted out by annotation
    enriched: bool  # built with the pod's API metadata (not just its path)
    version: int  # the pod cache version it was built from: rebuild when that moves
    # What pipeline rules match and route on: namespace, pod, container, app, workload, node
    # (from the path, or the API), and the pod's own labels and annotations when known.
    values: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def shared_key(self) -> str | None:
        """The batch key when stdout and stderr go to one Loki stream (the default)."""
        return self.stdout.key if self.stdout.key == self.stderr.key else None


class Enricher:
    """Builds FileStreams once per file, and again only when the pod cache has changed."""

    def __init__(self, config: LabelsConfig, node: str, pods: PodCache | None = None) -> None:
        self._config = config
        self._node = node
        self._pods = pods

    @property
    def version(self) -> int:
        return self._pods.version if self._pods is not None else 0

    def streams(self, meta: PathMeta | None, path: str) -> FileStreams:
        pod = self._lookup(meta)
        values = self._values(meta, pod, path)
        stdout = self._stream(values, "stdout", meta)
        stderr = self._stream(values, "stderr", meta, sibling=stdout)
        excluded = pod is not None and meta is not None and pod.excludes(meta.container)
        return FileStreams(stdout, stderr, excluded, pod is not None, self.version,
                           MappingProxyType(values), pod.labels if pod else _EMPTY,
                           pod.annotations if pod else _EMPTY)

    @property
    def waits_for_pods(self) -> bool:
        return self._pods is not None

    def excluded(self, stream: Stream) -> bool:
        """Whether the pod or container a stream's entries come from opts out now: asked again
        before they are sent, as the annotation (or the pod) may arrive after they were read."""
        origin = stream.origin
        if self._pods is None or origin is None:
            return False
        pod = self._pods.get_for_log(origin)
        return pod is not None and pod.excludes(origin.container)

    def _lookup(self, meta: PathMeta | None) -> PodMeta | None:
        if self._pods is None or meta is None:
            return None
        return self._pods.get_for_log(meta)

    def _values(self, meta: PathMeta | None, pod: PodMeta | None, path: str) -> dict[str, str]:
        if meta is None:  # not a kubelet file: the path is all we know, as Promtail does
            return {"filename": path, "node": self._node}
        workload = pod.workload if pod else workload_from_pod_name(meta.pod)
        values = {
            "namespace": meta.namespace,
            "pod": meta.pod,
            "pod_uid": pod.uid if pod else meta.pod_uid,
            "container": meta.container,
            "node": self._node or (pod.node if pod else ""),
            "app": pod.app if pod else workload,
            "workload": workload,
        }
        if pod is not None:
            for key in self._config.pod_labels:
                if key in pod.labels:
                    values[sanitize_label_name(key)] = pod.labels[key]
            for key in self._config.pod_annotations:
                if key in pod.annotations:
                    values[sanitize_label_name(key)] = pod.annotations[key]
        return values

    def _stream(self, values: dict[str, str], stream: str, meta: PathMeta | None,
                sibling: Stream | None = None) -> Stream:
        """`sibling`: the file's other output's Stream. Their labels are the same unless
        `stream` is a label (by default it is metadata): then shared, not built twice."""
        values = {**values, "stream": stream}
        label_keys = set(self._config.stream) | ({"filename"} if "filename" in values else set())
        metadata_keys = (set(self._config.structured_metadata)
                         | {sanitize_label_name(k) for k in self._config.pod_labels}
                         | {sanitize_label_name(k) for k in self._config.pod_annotations})
        pairs = tuple(sorted((k, v) for k, v in values.items() if k in label_keys and v))
        metadata = tuple(sorted(
            (k, v) for k, v in values.items() if k in metadata_keys - label_keys and v))
        if sibling is not None and sibling.label_pairs == pairs:
            return Stream(sibling.labels, sibling.label_pairs, metadata, origin=meta)
        return Stream(render_labels(pairs), pairs, metadata, origin=meta)
