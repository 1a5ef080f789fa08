"""Metadata before data: when a tailer may start reading a file, given what the API has told."""

from __future__ import annotations

import asyncio
import logging

from shipper.config import KubernetesConfig
from shipper.kube.pod_cache import PodCache
from shipper.kube.pod_path import PathMeta

log = logging.getLogger(__name__)


class MetadataGate:
    """Holds a file's first read back until its pod is known, within bounds. Lines read earlier
    would go out under labels guessed from the path (splitting the pod's streams in Loki), and
    a pod that opted out by annotation would leak its backlog.

    No file is read before the first pod list of the node is in the cache, or before
    kubernetes.startup_wait has passed (the API is slow or unreachable: lines go out with what
    their path says). Then a file whose pod is not known yet (kubelet wrote it before the watch
    told of the pod) waits for it up to kubernetes.pod_wait. Files are opened meanwhile, so a
    rotation is not missed; only reading waits."""

    def __init__(self, pods: PodCache, config: KubernetesConfig) -> None:
        self._pods = pods
        self._startup_wait = config.startup_wait
        self._pod_wait = config.pod_wait
        self._warm = asyncio.Event()
        self._changed = asyncio.Event()  # replaced at each change: setting it wakes its waiters
        pods.subscribe(self._on_change)

    @property
    def warm(self) -> bool:
        """The first list is in, or startup_wait is over."""
        return self._warm.is_set()

    def start(self) -> None:
        """The agent starts: startup_wait counts from now."""
        asyncio.get_running_loop().call_later(self._startup_wait, self._startup_over)

    async def wait(self, meta: PathMeta | None) -> None:
        """Return once the file whose path says `meta` may be read."""
        if meta is None:
            return  # outside the kubelet layout: no pod will ever be known for it
        await self._warm.wait()
        if not self._pods.listed:
            return  # startup_wait is over and the API never answered: no pod will come soon
        try:
            async with asyncio.timeout(self._pod_wait):
                while self._pods.get_for_log(meta) is None:
                    await self._changed.wait()
        except TimeoutError:
            log.info("pod not known after kubernetes.pod_wait; its lines go out with the labels "
                     "of their path until it is", extra={
                         "namespace": meta.namespace, "pod": meta.pod, "pod_uid": meta.pod_uid,
                         "container": meta.container})

    def _on_change(self) -> None:
        if self._pods.listed:
            self._warm.set()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _startup_over(self) -> None:
        if self._warm.is_set():
            return
        log.warning("no pod list within kubernetes.startup_wait: reading with the labels of the "
                    "paths (counted in shipper_entries_without_metadata_total) until the API "
                    "answers", extra={"startup_wait": self._startup_wait})
        self._warm.set()
