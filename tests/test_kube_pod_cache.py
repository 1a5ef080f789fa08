"""Tests of the pod metadata cache: workloads, app, exclusions, deletion TTL, relist."""

from __future__ import annotations

from typing import Any

import pytest

from shipper.kube.pod_cache import PodCache, PodMeta
from shipper.kube.pod_path import PathMeta
from tests.support.clock import Clock
from tests.support.fake_kube import make_pod


def meta_of(pod: dict[str, Any]) -> PodMeta:
    cache = PodCache()
    cache.apply("ADDED", pod)
    meta = cache.get(pod["metadata"]["namespace"], pod["metadata"]["name"])
    assert meta is not None
    return meta


@pytest.mark.parametrize(("owner_kind", "owner_name", "labels", "workload", "kind"), [
    ("ReplicaSet", "web-7d4b9c8f6", {"pod-template-hash": "7d4b9c8f6"}, "web", "Deployment"),
    ("ReplicaSet", "my-api-5c98d", {}, "my-api", "Deployment"),  # no label: the hash suffix
    ("ReplicaSet", "web-api", {}, "web-api", "ReplicaSet"),  # "api" is no hash: a bare one
    ("Job", "backup-28571520", {}, "backup", "CronJob"),
    ("Job", "migrate-v2", {}, "migrate-v2", "Job"),
    ("Job", "run-1234567", {}, "run-1234567", "Job"),  # 7 digits: not a schedule suffix
    ("StatefulSet", "db", {}, "db", "StatefulSet"),
    ("DaemonSet", "shipper", {}, "shipper", "DaemonSet"),
    ("Node", "node-a", {}, "the-pod", "Pod"),  # a static pod's mirror
    ("Rollout", "canary", {}, "canary", "Rollout"),
    ("", "", {}, "the-pod", "Pod"),
])
def test_workload_follows_the_owner(owner_kind: str, owner_name: str, labels: dict[str, str],
                                    workload: str, kind: str) -> None:
    meta = meta_of(make_pod("the-pod", owner_kind=owner_kind, owner_name=owner_name,
                            labels=labels))
    assert (meta.workload, meta.workload_kind) == (workload, kind)


def test_the_controller_reference_wins_over_others() -> None:
    pod = make_pod("p", owner_kind="StatefulSet", owner_name="db")
    refs = pod["metadata"]["ownerReferences"]
    refs.insert(0, {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"})
    assert meta_of(pod).workload_kind == "StatefulSet"


def test_app_prefers_the_recommended_label_then_app_then_workload() -> None:
    both = {"app.kubernetes.io/name": "shop", "app": "legacy"}
    assert meta_of(make_pod("p", labels=both)).app == "shop"
    assert meta_of(make_pod("p", labels={"app": "legacy"})).app == "legacy"
    assert meta_of(make_pod("p", owner_kind="DaemonSet", owner_name="agent")).app == "agent"


def test_identity_labels_and_annotations_are_kept() -> None:
    pod = make_pod("p", "shop", "node-b", uid="u-1", labels={"team": "a"},
                   annotations={"note": "x",
                                "kubectl.kubernetes.io/last-applied-configuration": "{...}"})
    meta = meta_of(pod)
    assert (meta.namespace, meta.name, meta.uid, meta.node) == ("shop", "p", "u-1", "node-b")
    assert dict(meta.labels) == {"team": "a"}
    assert dict(meta.annotations) == {"note": "x"}  # the kubectl manifest copy is dropped


def test_exclusion_annotations() -> None:
    assert meta_of(make_pod("p", annotations={"shipper.io/exclude": "true"})).excluded
    assert not meta_of(make_pod("p", annotations={"shipper.io/exclude": "false"})).excluded
    assert not meta_of(make_pod("p")).excluded
    skip = meta_of(make_pod("p", annotations={"shipper.io/exclude-containers": "a, b,,"}))
    assert skip.excluded_containers == frozenset({"a", "b"})
    assert not skip.excluded


def test_lookup_by_name_and_uid_and_versions() -> None:
    cache = PodCache()
    assert cache.get("default", "p") is None
    cache.apply("ADDED", make_pod("p", uid="u-1"))
    assert cache.version == 1
    assert cache.get_by_uid("u-1") is cache.get("default", "p")
    assert len(cache) == 1


def test_modified_bumps_the_version_only_when_the_metadata_changed() -> None:
    cache = PodCache()
    pod = make_pod("p", uid="u-1", labels={"app": "a"})
    cache.apply("ADDED", pod)
    pod["status"]["phase"] = "Succeeded"
    cache.apply("MODIFIED", pod)
    assert cache.version == 1
    pod["metadata"]["labels"]["app"] = "b"
    cache.apply("MODIFIED", pod)
    assert cache.version == 2
    meta = cache.get("default", "p")
    assert meta is not None and meta.app == "b"


def test_listeners_hear_each_change_and_each_full_list() -> None:
    cache = PodCache()
    heard: list[tuple[int, bool]] = []
    cache.subscribe(lambda: heard.append((cache.version, cache.listed)))
    cache.replace([])  # an empty node: nothing changed, but the list is in
    pod = make_pod("p", uid="u-1")
    cache.apply("ADDED", pod)
    cache.apply("MODIFIED", pod)  # the same metadata: nothing a lookup could see
    assert heard == [(0, True), (1, True)]


def test_a_deleted_pod_is_kept_for_the_ttl() -> None:
    clock = Clock()
    cache = PodCache(deleted_ttl=60.0, clock=clock)
    pod = make_pod("p", uid="u-1")
    cache.apply("ADDED", pod)
    cache.apply("DELETED", pod)
    clock.now += 59.0
    cache.apply("DELETED", pod)  # delivered again (a relist replays): no new countdown
    cache.expire()
    assert cache.get("default", "p") is not None
    version = cache.version
    clock.now += 1.0
    cache.expire()
    assert cache.get("default", "p") is None and cache.get_by_uid("u-1") is None
    assert len(cache) == 0
    assert cache.version > version


def test_a_pod_recreated_under_its_name_survives_the_old_ones_expiry() -> None:
    clock = Clock()
    cache = PodCache(deleted_ttl=60.0, clock=clock)
    old, new = make_pod("db-0", uid="old"), make_pod("db-0", uid="new")
    cache.apply("ADDED", old)
    cache.apply("DELETED", old)
    cache.apply("ADDED", new)
    assert cache.get_by_uid("old") is not None  # late lines of the old pod, by uid
    clock.now += 61.0
    cache.expire()
    meta = cache.get("default", "db-0")
    assert meta is not None and meta.uid == "new"
    assert cache.get_by_uid("old") is None


def test_a_log_file_gets_the_pod_its_path_names_by_uid() -> None:
    clock = Clock()
    cache = PodCache(deleted_ttl=60.0, clock=clock)
    old, new = make_pod("db-0", uid="0ld"), make_pod("db-0", uid="ee1")
    old_file, new_file = PathMeta("default", "db-0", "app", "0ld"), PathMeta(
        "default", "db-0", "app", "ee1")
    cache.apply("ADDED", old)
    cache.apply("DELETED", old)
    assert cache.get_for_log(new_file) is None  # not the old pod under the new one's name
    cache.apply("ADDED", new)
    assert _uid(cache.get_for_log(old_file)) == "0ld"  # deleted: serves its last lines
    assert _uid(cache.get_for_log(new_file)) == "ee1"
    assert _uid(cache.get_for_log(PathMeta("default", "db-0", "app"))) == "ee1"  # no uid: name
    clock.now += 61.0
    cache.expire()
    assert cache.get_for_log(old_file) is None


def test_a_static_pods_log_is_found_through_its_mirror() -> None:
    cache = PodCache()
    config_hash = "81cdabfc720501d9e81b425b15921b4d"  # kubelet's uid for it, named in its path
    cache.apply("ADDED", make_pod("kube-apiserver-node-a", "kube-system", uid="a-mirror-uid",
                                  owner_kind="Node", owner_name="node-a",
                                  annotations={"kubernetes.io/config.mirror": config_hash}))
    found = cache.get_for_log(PathMeta("kube-system", "kube-apiserver-node-a", "kube-apiserver",
                                       config_hash))
    assert _uid(found) == "a-mirror-uid"


def _uid(meta: PodMeta | None) -> str | None:
    return None if meta is None else meta.uid


def test_replace_keeps_listed_pods_and_retires_the_rest() -> None:
    clock = Clock()
    cache = PodCache(deleted_ttl=60.0, clock=clock)
    gone, stays = make_pod("gone", uid="g"), make_pod("stays", uid="s", labels={"app": "1"})
    cache.apply("ADDED", gone)
    cache.apply("ADDED", stays)
    stays["metadata"]["labels"]["app"] = "2"
    cache.replace([stays, make_pod("new", uid="n")])
    assert cache.get("default", "gone") is not None  # absent from the list: kept for the TTL
    stays_meta = cache.get("default", "stays")
    assert stays_meta is not None and stays_meta.app == "2"
    assert cache.get("default", "new") is not None
    clock.now += 60.0
    cache.expire()
    assert cache.get("default", "gone") is None
    assert cache.get("default", "stays") is not None and cache.get("default", "new") is not None


def test_a_listed_pod_that_was_deleted_is_alive_again() -> None:
    clock = Clock()
    cache = PodCache(deleted_ttl=60.0, clock=clock)
    pod = make_pod("p", uid="u")
    cache.apply("ADDED", pod)
    cache.replace([])
    cache.replace([pod])
    clock.now += 120.0
    cache.expire()
    assert cache.get("default", "p") is not None


def test_only_pod_changes_are_applied() -> None:
    with pytest.raises(ValueError, match="BOOKMARK"):
        PodCache().apply("BOOKMARK", make_pod("p"))
