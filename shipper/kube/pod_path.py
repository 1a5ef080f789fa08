"""Metadata from a log file's path and its links: what is known before (or without) the API."""

from __future__ import annotations

import os
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
_MAX_LINKS = 8  # kubelet makes two; more is a loop or not its layout


@dataclass(frozen=True, slots=True)
class PathMeta:
    namespace: str
    pod: str
    container: str
    pod_uid: str = ""


def parse_log_path(*paths: str) -> PathMeta | None:
    """What the first of `paths` that names a pod's log file says: a /var/log/pods path first,
    as only it carries the pod's uid (a pod deleted and recreated under the same name has a new
    one), else a /var/log/containers link name; None for a file outside the kubelet layout."""
    for path in paths:
        if m := _PODS_RE.search(path):
            return PathMeta(m["ns"], m["pod"], m["container"], m["uid"])
    for path in paths:
        if m := _CONTAINERS_RE.search(path):
            return PathMeta(m["ns"], m["pod"], m["container"])
    return None


def link_chain(path: str) -> list[str]:
    """`path`, then each symlink it leads through: /var/log/containers/<name>.log points to
    /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log, which with Docker points on into
    /var/lib/docker/containers. realpath() would skip the one hop that names the uid."""
    chain = [path]
    for _ in range(_MAX_LINKS):
        try:
            target = os.readlink(chain[-1])
        except OSError:  # not a link (the usual end), or gone: what we have is all we know
            break
        chain.append(os.path.join(os.path.dirname(chain[-1]), target))
    return chain


def workload_from_pod_name(pod: str) -> str:
    """Best guess of the owning workload from the pod name alone: api-7d9f8b6c5d-x2x4q -> api,
    backup-28391234-abcde -> backup, web-0 -> web. The API, when available, knows better."""
    name = _RANDOM_SUFFIX.sub("", pod)
    if name != pod:
        without_cron = _CRONJOB_SUFFIX.sub("", name)
        return without_cron if without_cron != name else _TEMPLATE_HASH.sub("", name)
    return _ORDINAL.sub("", pod) or pod
