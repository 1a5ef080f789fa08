"""Kubernetes metadata: the pods of this node, as the watch last saw them (no I/O here)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shipper.kube.pod_path import CRONJOB_SUFFIX, SAFE_ALPHABET, PathMeta

EXCLUDE = "shipper.io/exclude"
EXCLUDE_CONTAINERS = "shipper.io/exclude-containers"
# kubelet names a static pod's log directory by its config hash, which the pod's mirror in the
# API carries here: the mirror's own uid is another one.
MIRROR = "kubernetes.io/config.mirror"
# kubectl apply stores the whole manifest here: kilobytes per pod that no log label wants.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# The Deployment controller names a ReplicaSet <deployment>-<pod-template-hash>.
_TEMPLATE_HASH = re.compile(f"^(.+)-{SAFE_ALPHABET}{{1,10}}$")
# The CronJob controller names a Job <cronjob>-<scheduled time in minutes since the epoch>.
_CRONJOB_JOB = re.compile("^(.*)" + CRONJOB_SUFFIX)


@dataclass(frozen=True, slots=True)
class PodMeta:
    """What enrichment needs of one pod: a few strings, not the pod's JSON."""

    namespace: str
    name: str
    uid: str
    node: str
    workload: str
    workload_kind: str  # Deployment, ReplicaSet, CronJob, Job, StatefulSet, DaemonSet, Pod, ...
    app: str  # label app.kubernetes.io/name, else label app, else the workload name
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    excluded: bool  # annotation shipper.io/exclude: "true"
    excluded_containers: frozenset[str]  # annotation shipper.io/exclude-containers: "a,b"

    def excludes(self, container: str) -> bool:
        """Whether the container's lines are opted out, the whole pod or just it."""
        return self.excluded or container in self.excluded_containers


def _strings(raw: object, drop: frozenset[str] = frozenset()) -> Mapping[str, str]:
    if not isinstance(raw, dict) or not raw:
        return MappingProxyType({})
    # Every pod repeats the same keys (app, pod-template-hash, ...): share one copy of each.
    return MappingProxyType({sys.intern(k): v for k, v in raw.items()
                             if isinstance(k, str) and isinstance(v, str) and k not in drop})


def _owner(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    """The controlling ownerReference as (kind, name); the first one if none says controller."""
    refs = [r for r in metadata.get("ownerReferences") or () if isinstance(r, dict)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None
    return str(ref.get("kind", "")), str(ref.get("name", ""))


def _workload(pod_name: str, labels: Mapping[str, str],
                     owner: tuple[str, str] | None) -> tuple[str, str]:
    """The owning workload as (name, kind), from the pod alone: never an extra API call."""
    if owner is None:
        return pod_name, "Pod"
    kind, name = owner
    if kind == "ReplicaSet":
        template_hash = labels.get("pod-template-hash")
        if template_hash and name.endswith("-" + template_hash):
            return name[: -len(template_hash) - 1], "Deployment"
        if not template_hash and (m := _TEMPLATE_HASH.match(name)):
            return m.group(1), "Deployment"
        return name, "ReplicaSet"
    if kind == "Job" and (m := _CRONJOB_JOB.match(name)):
        return m.group(1), "CronJob"
    if kind == "Node":
        # A static pod's mirror is owned by its node, which is not a workload: the pod is.
        return pod_name, "Pod"
    return name, kind


def _pod_meta(pod: Mapping[str, Any]) -> PodMeta:
    """Distil a pod's JSON (as the API serves it) into its PodMeta."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = str(metadata.get("name", ""))
    labels = _strings(metadata.get("labels"))
    annotations = _strings(metadata.get("annotations"), _DROPPED_ANNOTATIONS)
    workload, kind = _workload(name, labels, _owner(metadata))
    app = labels.get("app.kubernetes.io/name") or labels.get("app") or workload
    containers = annotations.get(EXCLUDE_CONTAINERS, "")
    return PodMeta(
        namespace=sys.intern(str(metadata.get("namespace", ""))),
        name=name,
        uid=str(metadata.get("uid", "")),
        node=sys.intern(str(spec.get("nodeName", ""))),
        workload=workload,
        workload_kind=sys.intern(kind),
        app=app,
        labels=labels,
        annotations=annotations,
        excluded=annotations.get(EXCLUDE, "").strip().lower() == "true",
        excluded_containers=frozenset(c.strip() for c in containers.split(",") if c.strip()),
    )


class PodCache:
    """Pods by (namespace, name) and by uid. A deleted pod stays `deleted_ttl` seconds, so the
    last lines its containers wrote are still enriched after the API forgot it."""

    def __init__(self, deleted_ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.version = 0  # bumped whenever a lookup could answer differently
        self.listed = False  # a full list is in: every pod of the node was known at that point
        self._ttl = deleted_ttl
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._by_uid: dict[str, PodMeta] = {}
        self._by_name: dict[tuple[str, str], PodMeta] = {}
        self._deleted_at: dict[str, float] = {}  # uid -> clock() at deletion

    def get(self, namespace: str, name: str) -> PodMeta | None:
        return self._by_name.get((namespace, name))

    def get_by_uid(self, uid: str) -> PodMeta | None:
        return self._by_uid.get(uid)

    def get_for_log(self, meta: PathMeta) -> PodMeta | None:
        """The pod whose container writes the log file `meta` was read from: by the uid in its
        path when it has one, so that a pod deleted and recreated under the same name (a
        StatefulSet's) never lends its metadata to the other one's files."""
        if not meta.pod_uid:
            return self.get(meta.namespace, meta.pod)
        pod = self._by_uid.get(meta.pod_uid)
        if pod is None:  # a static pod's directory is named by its mirror's config hash
            named = self.get(meta.namespace, meta.pod)
            if named is not None and named.annotations.get(MIRROR) == meta.pod_uid:
                return named
        return pod

    def __len__(self) -> int:
        return len(self._by_uid)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each change a lookup could see, and after each full list:
        whoever waits for a pod is woken by its arrival, not by polling."""
        self._listeners.append(listener)

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None:
        """Apply one watch event: ADDED, MODIFIED or DELETED with the pod's JSON."""
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            raise ValueError(f"not a pod change: {event_type!r}")
        meta = _pod_meta(pod)
        deleted_at = None
        if event_type == "DELETED":  # a repeated DELETED must not restart the countdown
            deleted_at = self._deleted_at.get(meta.uid, self._clock())
        self._store(meta, deleted_at)

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Take a full list as the new truth: pods missing from it count as deleted now."""
        listed: set[str] = set()
        for pod in pods:
            meta = _pod_meta(pod)
            self._store(meta, None)
            listed.add(meta.uid)
        now = self._clock()
        for uid in self._by_uid.keys() - listed:
            self._deleted_at.setdefault(uid, now)
        self.listed = True
        self._notify()

    def expire(self) -> None:
        """Forget pods deleted more than `deleted_ttl` seconds ago."""
        now = self._clock()
        for uid, deleted_at in list(self._deleted_at.items()):
            if now - deleted_at < self._ttl:
                continue
            del self._deleted_at[uid]
            meta = self._by_uid.pop(uid)
            key = (meta.namespace, meta.name)
            # A StatefulSet pod comes back under the same name: keep the new one.
            if self._by_name.get(key) is meta:
                del self._by_name[key]
            self._changed()

    def _store(self, meta: PodMeta, deleted_at: float | None) -> None:
        if deleted_at is None:
            self._deleted_at.pop(meta.uid, None)  # listed or modified again: alive after all
        else:
            self._deleted_at[meta.uid] = deleted_at
        key = (meta.namespace, meta.name)
        if self._by_uid.get(meta.uid) == meta and self._by_name.get(key) is self._by_uid[meta.uid]:
            return  # most MODIFIED events are status changes that leave PodMeta as it was
        self._by_uid[meta.uid] = meta
        self._by_name[key] = meta
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
