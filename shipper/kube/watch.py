"""Kubernetes metadata: one list + watch of this node's pods, feeding the PodCache."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2 as httpx
import yaml
from lightkube import ConfigError as KubeConfigError
from lightkube import KubeConfig, SingleConfig
from lightkube.config.client_adapter import AsyncClient, ConnectionParams
from lightkube.config.models import User

from shipper.checks import file_problem, tls_problem
from shipper.config import ConfigError, KubernetesConfig
from shipper.kube.pod_cache import PodCache
from shipper.metrics import Metrics

log = logging.getLogger(__name__)

PODS = "/api/v1/pods"
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
EXPIRE_INTERVAL = 5.0  # how late a deleted pod may be forgotten, past its TTL
# The API server ends a watch after timeoutSeconds; spread the ends so that a DaemonSet started
# all at once does not come back all at once. A read idle past the end means a dead connection.
WATCH_SECONDS = (240, 360)
WATCH_IDLE_GRACE = 30.0
REQUEST_TIMEOUT = 30.0


class _Restart(Exception):
    """The list or the watch must start over; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # gone: relist | status: unexpected answer | error: anything else


class _Unusable(Exception):
    """A file the kubeconfig names cannot be used; the message says which and why."""


_TLS_NAMES = {"ca_file": "certificate-authority", "cert_file": "client-certificate",
              "key_file": "client-key"}


def _check_named_files(single: SingleConfig) -> None:
    """The files a kubeconfig context names, loaded on their own so the message names one."""
    user = single.user or User()

    def path(name: str | None) -> str:  # relative to the kubeconfig, as kubectl reads them
        return str(single.abs_file(name)) if name else ""

    tls = {"ca_file": path(single.cluster.certificate_auth),
           "cert_file": path(user.client_cert),
           "key_file": path(user.client_key)}
    if problem := tls_problem(**tls):
        role, reason = problem
        raise _Unusable(f"its {_TLS_NAMES[role]} {tls[role]!r} {reason}")
    token_file = path(user.token_file)
    if token_file and (token_problem := file_problem(token_file)):
        raise _Unusable(f"its tokenFile {token_file!r} {token_problem}")


def _one_line(exc: Exception) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())


def load_kube_config(config: KubernetesConfig) -> SingleConfig:
    """The kubeconfig file if one is given, else the in-cluster service account. What it names
    is loaded here as the watch will load it, so that a missing or bad file fails at start
    naming the key, not later inside the watch."""
    key = "kubernetes.kubeconfig"
    where = repr(config.kubeconfig) if config.kubeconfig else "the in-cluster service account"
    if config.kubeconfig and (problem := file_problem(config.kubeconfig)):
        raise ConfigError(key, f"{where} {problem}")  # lightkube says "not found" for a directory
    try:
        if config.kubeconfig:
            kubeconfig = KubeConfig.from_file(config.kubeconfig)
        else:
            kubeconfig = KubeConfig.from_service_account()
        single = kubeconfig.get()
        if single is not None:
            _check_named_files(single)
            ConnectionParams().httpx_params(single)  # the TLS context and auth the watch uses
    except _Unusable as exc:
        raise ConfigError(key, f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{where} is not valid YAML: {_one_line(exc)}") from None
    except (AttributeError, TypeError):  # YAML, but not shaped as a kubeconfig
        raise ConfigError(key, f"{where} is not a kubeconfig (a mapping with clusters, users "
                          "and contexts)") from None
    except Exception as exc:  # whatever else is wrong in the file, name the key and the reason
        raise ConfigError(key, f"cannot use {where}: {_one_line(exc)}") from None
    if single is None:
        raise ConfigError(key, f"{where} has no current context")
    return single


class PodWatcher:
    """Keeps a PodCache equal to the API's view of this node's pods, for as long as it runs.

    Lists once (served from the API server's watch cache: resourceVersion=0), then watches from
    the list's resourceVersion. A dropped stream resumes from the last resourceVersion seen;
    only 410 Gone costs a relist. Any failure backs off and retries: the API being slow or
    down delays metadata, never the log lines."""

    def __init__(self, config: KubernetesConfig, cache: PodCache, metrics: Metrics, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 page_size: int = 500) -> None:
        if not config.node_name:
            raise ConfigError("kubernetes.node_name",
                              "required: set NODE_NAME from spec.nodeName (downward API)")
        self._kube = load_kube_config(config)
        self._cache = cache
        self._metrics = metrics
        self._sleep = sleep
        self._page_size = page_size
        self._selector = f"spec.nodeName={config.node_name}"
        self._rv = ""  # resourceVersion to resume the watch from
        self._progressed = False  # the current attempt received an event

    @property
    def synced(self) -> bool:
        """The first list is in the cache."""
        return self._cache.listed

    async def run(self) -> None:
        """List and watch until cancelled. Never raises for API trouble."""
        params = ConnectionParams(timeout=httpx.Timeout(REQUEST_TIMEOUT))
        async with AsyncClient(self._kube, params) as client, asyncio.TaskGroup() as tasks:
            tasks.create_task(self._expire_forever())
            await self._list_and_watch_forever(client)

    async def _list_and_watch_forever(self, client: httpx.AsyncClient) -> None:
        backoff = MIN_BACKOFF
        relist = True
        while True:
            self._progressed = False
            try:
                if relist:
                    await self._list(client)
                    relist = False
                await self._watch(client)
                reason = "closed"
                log.debug("pod watch ended at resourceVersion %s", self._rv)
            except _Restart as exc:
                reason = exc.reason
                relist = relist or reason == "gone"
                log.log(logging.INFO if reason == "gone" else logging.WARNING,
                        "pod watch restarts (%s): %s", reason, exc)
            except (httpx.HTTPError, OSError, KubeConfigError) as exc:
                reason = "error"
                log.warning("pod watch restarts: %r", exc)
            self._metrics.kube_watch_restarts.labels(reason).inc()
            if self._progressed:
                backoff = MIN_BACKOFF
                continue
            await self._sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _list(self, client: httpx.AsyncClient) -> None:
        pods: list[Mapping[str, Any]] = []
        params = {"fieldSelector": self._selector, "limit": str(self._page_size),
                  "resourceVersion": "0"}
        while True:
            response = await client.get(PODS, params=params)
            if response.status_code != 200:
                raise _status_restart(response.status_code, response.text)
            body = _json_object(response.content)
            metadata = body.get("metadata") or {}
            # Keep what PodMeta reads: a page of whole pods is megabytes, their metadata is not.
            pods.extend({"metadata": p.get("metadata"), "spec": {
                "nodeName": (p.get("spec") or {}).get("nodeName")}}
                for p in body.get("items") or () if isinstance(p, dict))
            if not metadata.get("continue"):
                break
            params = {"fieldSelector": self._selector, "limit": str(self._page_size),
                      "continue": str(metadata["continue"])}
        self._cache.replace(pods)
        self._rv = str(metadata.get("resourceVersion", ""))
        self._metrics.kube_pods.set(len(self._cache))
        log.info("listed %d pods on this node at resourceVersion %s", len(pods), self._rv)

    async def _watch(self, client: httpx.AsyncClient) -> None:
        seconds = random.randint(*WATCH_SECONDS)
        params = {"watch": "true", "fieldSelector": self._selector, "resourceVersion": self._rv,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(seconds)}
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=seconds + WATCH_IDLE_GRACE)
        async with client.stream("GET", PODS, params=params, timeout=timeout) as response:
            if response.status_code != 200:
                await response.aread()
                raise _status_restart(response.status_code, response.text)
            async for line in response.aiter_lines():
                if line.strip():
                    self._handle(_json_object(line.encode()))

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, dict):
            raise _Restart("error", f"watch event without an object: {event!r:.200}")
        if kind == "ERROR":
            raise _status_restart(obj.get("code"), str(obj.get("message", "")))
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._cache.apply(kind, obj)
            self._metrics.kube_pods.set(len(self._cache))
        elif kind != "BOOKMARK":
            raise _Restart("error", f"unknown watch event type {kind!r}")
        self._rv = str((obj.get("metadata") or {}).get("resourceVersion") or self._rv)
        self._progressed = True

    async def _expire_forever(self) -> None:
        while True:
            await self._sleep(EXPIRE_INTERVAL)
            self._cache.expire()
            self._metrics.kube_pods.set(len(self._cache))


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise _Restart("error", f"not JSON: {data[:200]!r}") from None
    if not isinstance(value, dict):
        raise _Restart("error", f"not a JSON object: {data[:200]!r}")
    return value


def _status_restart(code: object, message: str) -> _Restart:
    if code == 410:  # resourceVersion compacted away, or a list's continue token expired
        return _Restart("gone", f"410 Gone: {message[:200]}")
    return _Restart("status", f"HTTP {code}: {message[:200]}")
