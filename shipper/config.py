"""Configuration: frozen dataclasses with DaemonSet defaults, loaded strictly from YAML."""

from __future__ import annotations

import dataclasses
import os
import re
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from shipper.pipeline.config import Rule, read_pipeline
from shipper.schema import Bytes, ConfigError, Seconds, build


@dataclass(frozen=True, slots=True)
class InputsConfig:
    paths: tuple[str, ...] = ("/var/log/containers/*.log",)  # globs; symlinks followed
    exclude: tuple[str, ...] = ()  # globs matched against the discovered path
    rescan_interval: Seconds = 10.0  # safety net behind inotify
    read_chunk_bytes: Bytes = 256 * 1024  # one os.read per chunk, never one per line
    max_line_bytes: Bytes = 256 * 1024  # Loki's default max_line_size; longer lines are truncated
    max_rotated_files: int = 64  # renamed files kept open until drained; past this the oldest goes


@dataclass(frozen=True, slots=True)
class PositionsConfig:
    path: str = "/var/lib/shipper/positions.json"  # empty: positions are not persisted
    write_interval: Seconds = 1.0


@dataclass(frozen=True, slots=True)
class BasicAuthConfig:
    username: str = ""
    password_file: str = ""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class LokiConfig:
    url: str = "http://loki:3100/loki/api/v1/push"  # empty: dry run, entries printed as JSON
    tenant_id: str = ""  # X-Scope-OrgID when set
    timeout: Seconds = 10.0  # per request
    min_backoff: Seconds = 0.5
    max_backoff: Seconds = 300.0
    bearer_token_file: str = ""  # re-read when it changes (projected tokens rotate)
    basic_auth: BasicAuthConfig = field(default_factory=BasicAuthConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    # http://[user:password@]host:port overrides HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY;
    # empty: those variables decide; "direct": no proxy whatever they say.
    proxy_url: str = ""


@dataclass(frozen=True, slots=True)
class BatchConfig:
    size: int = 100  # lines: a trigger to send, not a cap
    timeout: Seconds = 10.0  # ...or once the oldest line waited this long
    max_bytes: Bytes = 1024 * 1024  # hard cap per request (uncompressed protobuf)
    max_pending_bytes: Bytes = 4 * 1024 * 1024  # read but unacknowledged: the memory bound


LABEL_SOURCES = ("namespace", "pod", "pod_uid", "container", "node", "app", "workload", "stream")


@dataclass(frozen=True, slots=True)
class LabelsConfig:
    stream: tuple[str, ...] = ("namespace", "container", "app")  # Loki stream labels
    structured_metadata: tuple[str, ...] = ("pod", "node", "stream")  # per entry, not indexed
    pod_labels: tuple[str, ...] = ()  # pod labels copied into structured metadata
    pod_annotations: tuple[str, ...] = ()  # pod annotations copied into structured metadata


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    # auto: on when running in a cluster (KUBERNETES_SERVICE_HOST) or a kubeconfig is given
    enabled: Literal["auto", "true", "false"] = "auto"
    kubeconfig: str = ""  # empty: in-cluster service account
    node_name: str = ""  # NODE_NAME overrides; the pod watch is scoped to this node
    deleted_pod_ttl: Seconds = 60.0  # keep a deleted pod's metadata for its last lines
    startup_wait: Seconds = 10.0  # no file is read before the first pod list, or this long
    pod_wait: Seconds = 5.0  # a file whose pod is not known yet waits this long for it
    # Honour the shipper.io/multiline, parser, drop and tenant pod annotations (docs/pipeline.md)
    pipeline_annotations: bool = True


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "0.0.0.0:9080"  # /metrics, /healthz, /ready; empty disables
    ready_push_failure_window: Seconds = 120.0  # not ready once pushes fail for this long


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    deadline: Seconds = 20.0  # on SIGTERM: drain and push for at most this long


@dataclass(frozen=True, slots=True)
class Config:
    inputs: InputsConfig = field(default_factory=InputsConfig)
    positions: PositionsConfig = field(default_factory=PositionsConfig)
    loki: LokiConfig = field(default_factory=LokiConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    pipeline: tuple[Rule, ...] = ()  # read by shipper.pipeline.config, not by build()

    @property
    def dry_run(self) -> bool:
        return not self.loki.url

    @property
    def kubernetes_enabled(self) -> bool:
        if self.kubernetes.enabled == "auto":
            return bool(self.kubernetes.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"))
        return self.kubernetes.enabled == "true"


def _check(config: Config) -> None:
    """Cross-field checks: fail at start rather than at the first push. What the values name
    (files, TLS material) is checked by shipper.checks, the listen address by binding it."""
    for key in ("stream", "structured_metadata"):
        for source in getattr(config.labels, key):
            if source not in LABEL_SOURCES:
                raise ConfigError(f"labels.{key}", f"unknown label source {source!r} "
                                  f"(known: {', '.join(LABEL_SOURCES)})")
    if not config.labels.stream:
        raise ConfigError("labels.stream", "at least one stream label is needed")
    if config.loki.url:
        _check_url("loki.url", config.loki.url)
    if bool(config.loki.tls.cert_file) != bool(config.loki.tls.key_file):
        raise ConfigError("loki.tls", "cert_file and key_file must be given together")
    if config.loki.basic_auth.password_file and not config.loki.basic_auth.username:
        raise ConfigError("loki.basic_auth.username", "required when password_file is set")
    if config.loki.min_backoff > config.loki.max_backoff:
        raise ConfigError("loki.min_backoff", "must not exceed loki.max_backoff")
    if config.batch.max_bytes > config.batch.max_pending_bytes:
        raise ConfigError("batch.max_pending_bytes", "must be at least batch.max_bytes")
    if config.server.listen:
        if not (m := re.match(r"^[^\s:]*:(\d{1,5})$", config.server.listen)):
            raise ConfigError("server.listen", f"expected HOST:PORT, got {config.server.listen!r}")
        if int(m.group(1)) > 65535:
            raise ConfigError("server.listen", f"port {m.group(1)} is out of range (0-65535)")


PUSH_PATH = "/loki/api/v1/push"


def _check_url(key: str, url: str) -> None:
    """loki.url: http(s), a host, a numeric port, and a path ending in /push (Loki's own is
    /loki/api/v1/push; gateways and the legacy /api/prom/push end the same way)."""
    expected = f"expected Loki's push endpoint, such as http://loki:3100{PUSH_PATH}"
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(key, f"{expected}, got {url!r}")
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError as exc:
        raise ConfigError(key, f"{expected}: {exc}") from None
    if not parts.path.endswith("/push"):
        path = repr(parts.path) if parts.path else "empty"
        raise ConfigError(key, f"{expected}; the path is {path}, which does not end in /push")


def _apply_env(config: Config, env: typing.Mapping[str, str]) -> Config:
    if "SHIPPER_LOKI_URL" in env:
        config = dataclasses.replace(
            config, loki=dataclasses.replace(config.loki, url=env["SHIPPER_LOKI_URL"]))
    if env.get("NODE_NAME"):
        config = dataclasses.replace(
            config, kubernetes=dataclasses.replace(config.kubernetes, node_name=env["NODE_NAME"]))
    return config


def parse_config(text: str, env: typing.Mapping[str, str] | None = None) -> Config:
    """Build a Config from YAML text, then apply SHIPPER_LOKI_URL and NODE_NAME overrides."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"not valid YAML: {exc}") from None
    pipeline = raw.pop("pipeline", None) if isinstance(raw, dict) else None
    config = _apply_env(build("", Config, raw), os.environ if env is None else env)
    config = dataclasses.replace(config, pipeline=read_pipeline(pipeline))
    _check(config)
    return config


def load_config(path: str | os.PathLike[str] | None,
                env: typing.Mapping[str, str] | None = None) -> Config:
    """Load a config file (None: all defaults)."""
    if path is None:
        return parse_config("", env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    return parse_config(text, env)


__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
