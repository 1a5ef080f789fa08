"""Metadata from a log file's path alone: what is known before (or without) the Kubernetes API."""

from __future__ import annotations

import re
from dataclasses import dataclass

# /var/log/containers/<pod>_<namespace>_<container>-<64 hex container id>.log
_CONTAINERS_RE = re.compile(
    r"/(?P<pod>[^/_]+)_(?P<ns>[^/_]+)_(?P<container>[^/]+)-[0-9a-f]{64}\.log$")
# /var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log (and rotated .log.<stamp>)
_PODS_RE = re.compile(
    r"/(?P<ns>[^/_]+)_(?P<pod>[^/_]+)_(?P<uid>[0-9a-fA-F-]+)/(?P<container>[^/]+)/\d+\.log")
# Pod name suffixes added by controllers: '-<5 char random>' on every generated pod,
# '-<pod-template-hash>' (6-10 chars from the safe alphabet) under a ReplicaSet, and the
# '-<minutes since epoch>' a CronJob gives its Jobs.
# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no 0/1/3, so it never reads as a word.
SAFE_ALPHABET = "[bcdfghjklmnpqrstvwxz2456789]"
CRONJOB_SUFFIX = r"-\d{8,}$"  # minutes since the epoch
_RANDOM_SUFFIX = re.compile(f"-{SAFE_ALPHABET}{{5}}$")
_TEMPLATE_HASH = re.compile(f"-{SAFE_ALPHABET}{{6,10}}$")
_CRONJOB_SUFFIX = re.compile(CRONJOB_SUFFIX)
_ORDINAL = re.compile(r"-\d+$")


@dataclass(frozen=True, slots=True)
class PathMeta:
    namespace: str
    pod: str
    container: str
    pod_uid: str = ""


def parse_log_path(*paths: str) -> PathMeta | None:
    """The first of `paths` (e.g. the /var/log/containers link, then its target) that names a
    pod's log file, or None for a file outside the kubelet layout."""
    for path in paths:
        if m := _CONTAINERS_RE.search(path):
            return PathMeta(m["ns"], m["pod"], m["container"])
    for path in paths:
        if m := _PODS_RE.search(path):
            return PathMeta(m["ns"], m["pod"], m["container"], m["uid"])
    return None


def workload_from_pod_name(pod: str) -> str:
    """Best guess of the owning workload from the pod name alone: api-7d9f8b6c5d-x2x4q -> api,
    backup-28391234-abcde -> backup, web-0 -> web. The API, when available, knows better."""
    name = _RANDOM_SUFFIX.sub("", pod)
    if name != pod:
        without_cron = _CRONJOB_SUFFIX.sub("", name)
        return without_cron if without_cron != name else _TEMPLATE_HASH.sub("", name)
    return _ORDINAL.sub("", pod) or pod
