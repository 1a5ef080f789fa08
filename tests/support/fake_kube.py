"""Test support: a fake Kubernetes API server for pods, speaking the real list/watch protocol."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-kube-token"


def make_pod(name: str, namespace: str = "default", node: str = "node-a", *, uid: str = "",
             labels: Mapping[str, str] | None = None,
             annotations: Mapping[str, str] | None = None, owner_kind: str = "",
             owner_name: str = "", containers: tuple[str, ...] = ("app",)) -> dict[str, Any]:
    """A pod as the API serves it, managedFields and status included, so sizes are realistic."""
    uid = uid or str(uuid.uuid4())
    metadata: dict[str, Any] = {
        "name": name, "namespace": namespace, "uid": uid,
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "labels": dict(labels or {}), "annotations": dict(annotations or {}),
        "managedFields": [{
            "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
            "time": "2024-05-01T12:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {k: {} for k in labels or {}}},
                         "f:spec": {f"k:{{\"name\":\"{c}\"}}": {".": {}, "f:image": {}}
                                    for c in containers}}}],
    }
    if owner_kind:
        metadata["ownerReferences"] = [{
            "apiVersion": "batch/v1" if owner_kind == "Job" else "apps/v1", "kind": owner_kind,
            "name": owner_name, "uid": str(uuid.uuid4()), "controller": True,
            "blockOwnerDeletion": True}]
        metadata["generateName"] = f"{owner_name}-"
    return {
        "kind": "Pod", "apiVersion": "v1", "metadata": metadata,
        "spec": {
            "nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
            "containers": [{
                "name": c, "image": f"registry.example.com/{c}:1.2.3",
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            } for c in containers],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.1.7",
            "startTime": "2024-05-01T12:00:00Z",
            "conditions": [{"type": t, "status": "True"} for t in
                           ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{
                "name": c, "ready": True, "restartCount": 0, "started": True,
                "imageID": f"registry.example.com/{c}@sha256:{uuid.uuid4().hex * 2}",
                "image": f"registry.example.com/{c}:1.2.3",
                "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
                "state": {"running": {"startedAt": "2024-05-01T12:00:01Z"}},
            } for c in containers],
        },
    }


@dataclass(frozen=True, slots=True)
class Request:
    """One request the server saw."""

    method: str
    path: str
    query: Mapping[str, str]

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


class FakeKube:
    """Pods in memory, an etcd-like resourceVersion counter and an event log the watches read.

    Use as a context manager; it listens on 127.0.0.1 on a free port. `list_delay`: seconds
    every LIST waits before it answers, as a loaded API server does."""

    def __init__(self, list_delay: float = 0.0) -> None:
        self._cond = threading.Condition()
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = 100
        # (rv, type, object, time.monotonic() when watches may see it)
        self._events: list[tuple[int, str, dict[str, Any], float]] = []
        self._event_delay = 0.0
        self.list_delay = list_delay
        self._compacted = 0  # watches and lists from an rv below this get 410 Gone
        self._epoch = 0  # bumped to end every open watch stream
        self._watching = 0  # open watch streams, past their start
        self._pages: dict[str, list[dict[str, Any]]] = {}  # continue token -> remaining items
        self._tokens = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self.requests: list[Request] = []
        self.gone_as_http = False  # answer a too-old watch with HTTP 410, not an ERROR event
        self._server: ThreadingHTTPServer | None = None
        self._port = 0
        self.come_up()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def come_up(self) -> None:
        """Listen (again, on the same port)."""
        server = _Server(("127.0.0.1", self._port), _handler(self))
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def go_down(self) -> None:
        """Stop listening and cut every open connection, as a crashed API server would."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._cond:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._epoch += 1
            self._cond.notify_all()

    def close(self) -> None:
        self.go_down()

    def __enter__(self) -> FakeKube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kubeconfig(self, path: str | Path) -> str:
        """Write a kubeconfig with token auth pointing at this server; return its path."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }
        Path(path).write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        return str(path)

    def agent_section(self, root: Path, node: str = "node-a") -> dict[str, str]:
        """The agent's `kubernetes:` config for this server, its kubeconfig under root."""
        return {"enabled": "true", "node_name": node,
                "kubeconfig": self.kubeconfig(root / "kubeconfig")}

    # -- pods ------------------------------------------------------------------------------

    @property
    def watching(self) -> int:
        """Watch streams open now: drop_watches() and compact() reach these."""
        with self._cond:
            return self._watching

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def add_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        return self._change("ADDED", copy.deepcopy(dict(pod)))

    def modify_pod(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        return self._change("MODIFIED", copy.deepcopy(dict(pod)))

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        with self._cond:
            pod = self._pods[(namespace, name)]
        return self._change("DELETED", pod)

    def delay_events(self, seconds: float) -> None:
        """Changes made from now on reach open watches `seconds` later (a lagging watch cache);
        a LIST sees them at once, as the API server's storage does."""
        with self._cond:
            self._event_delay = seconds

    def bookmark(self) -> None:
        """Send a BOOKMARK at the current rv to watches that allowed bookmarks."""
        with self._cond:
            obj = {"kind": "Pod", "apiVersion": "v1",
                   "metadata": {"resourceVersion": str(self._rv)}}
            self._events.append((self._rv, "BOOKMARK", obj, self._due()))
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget history: from now on, an rv older than the current one gets 410 Gone."""
        with self._cond:
            self._compacted = self._rv

    def drop_watches(self) -> None:
        """End every open watch stream cleanly, as the API server does at timeoutSeconds,
        once the events committed so far are sent."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def _change(self, kind: str, pod: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self._rv += 1
            meta = pod["metadata"]
            meta["resourceVersion"] = str(self._rv)
            key = (meta["namespace"], meta["name"])
            if kind == "DELETED":
                del self._pods[key]
            else:
                if (kind == "ADDED") == (key in self._pods):
                    raise ValueError(f"{kind} of {key}: not what the pod's existence allows")
                self._pods[key] = pod
            self._events.append((self._rv, kind, pod, self._due()))
            self._cond.notify_all()
            return copy.deepcopy(pod)

    def _due(self) -> float:
        return time.monotonic() + self._event_delay

    # -- protocol --------------------------------------------------------------------------

    def _list(self, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """The current state (any resourceVersion asked for is served as "not older than")."""
        time.sleep(self.list_delay)  # in this request's own thread: other requests go on
        with self._cond:
            if "continue" in query:
                items = self._pages.pop(query["continue"], None)
                if items is None:
                    return 410, _status(410, "Expired", "continue token expired")
            else:
                node = _node_selector(query)
                items = [p for _, p in sorted(self._pods.items())
                         if node is None or p["spec"].get("nodeName") == node]
            limit = int(query.get("limit", "0"))
            metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
            if limit and len(items) > limit:
                token = f"page-{next(self._tokens)}"
                self._pages[token] = items[limit:]
                items = items[:limit]
                metadata["continue"] = token
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata,
                         "items": copy.deepcopy(items)}

    def _too_old(self, query: Mapping[str, str]) -> bool:
        rv = query.get("resourceVersion", "")
        with self._cond:
            return rv not in ("", "0") and int(rv) < self._compacted

    def _watch(self, query: Mapping[str, str], send: Callable[[Mapping[str, Any]], None]) -> None:
        """Stream events after the requested rv until dropped or timeoutSeconds (fake time: the
        test ends streams with drop_watches)."""
        node = _node_selector(query)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        rv = query.get("resourceVersion", "")
        with self._cond:
            epoch = self._epoch
            if self._too_old(query):
                send({"type": "ERROR", "object": _status(410, "Expired",
                                                         f"too old resource version: {rv}")})
                return
            if rv in ("", "0"):  # "any": the current state as synthetic ADDED, then changes
                backlog = [("ADDED", p) for p in self._pods.values()]
                cursor = len(self._events)
            else:
                cursor = next((i for i, e in enumerate(self._events) if e[0] > int(rv)),
                              len(self._events))
                backlog = []
            self._watching += 1
        try:
            for kind, pod in backlog:
                send({"type": kind, "object": pod})
            self._follow(cursor, epoch, node, bookmarks, send)
        finally:
            with self._cond:
                self._watching -= 1

    def _follow(self, cursor: int, epoch: int, node: str | None, bookmarks: bool,
                send: Callable[[Mapping[str, Any]], None]) -> None:
        while True:
            with self._cond:
                while cursor == len(self._events) and self._epoch == epoch:
                    self._cond.wait()
                dropped = self._epoch != epoch
                batch = self._events[cursor:]
                cursor = len(self._events)
            for _, kind, obj, due in batch:
                time.sleep(max(0.0, due - time.monotonic()))
                if kind == "BOOKMARK":
                    if bookmarks:
                        send({"type": kind, "object": obj})
                elif node is None or obj["spec"].get("nodeName") == node:
                    send({"type": kind, "object": obj})
            if dropped:  # after what was already committed, so tests can order events
                return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hang up: not worth a trace
            super().handle_error(request, client_address)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _node_selector(query: Mapping[str, str]) -> str | None:
    selector = query.get("fieldSelector")
    if not selector:
        return None
    field, sep, value = selector.partition("=")
    if field != "spec.nodeName" or not sep:
        raise ValueError(f"unsupported fieldSelector {selector!r}")
    return value.removeprefix("=")  # "==" is a synonym of "="


def _valid_selector(query: Mapping[str, str]) -> bool:
    try:
        _node_selector(query)
    except ValueError:
        return False
    return True


def _handler(kube: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as the API server

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with kube._cond:
                kube._connections.add(self.connection)

        def finish(self) -> None:
            with kube._cond:
                kube._connections.discard(self.connection)
            with contextlib.suppress(OSError):  # cut by go_down()
                super().finish()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            kube.requests.append(Request("GET", url.path, query))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._json(401, _status(401, "Unauthorized", "Unauthorized"))
            elif url.path != "/api/v1/pods":
                self._json(404, _status(404, "NotFound", f"{url.path} not served here"))
            elif not _valid_selector(query):
                self._json(400, _status(400, "BadRequest", "unsupported fieldSelector"))
            elif query.get("watch") in ("true", "1") and kube.gone_as_http and kube._too_old(query):
                self._json(410, _status(410, "Expired", "too old resource version"))
            elif query.get("watch") in ("true", "1"):
                self._stream(query)
            else:
                self._json(*kube._list(query))

        def _json(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, query: Mapping[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def send(event: Mapping[str, Any]) -> None:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()

            try:
                kube._watch(query, send)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True

    return Handler
