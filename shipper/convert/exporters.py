"""Where the Collector sent logs: the loki exporter, otlphttp to Loki's OTLP endpoint (as the
push URL), debug/logging (a dry run); their HTTP settings (headers, TLS, authenticators); and
the Collector's own telemetry and extensions."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from shipper.convert.context import Ctx
from shipper.convert.report import Unsupported
from shipper.convert.source import (
    Collector,
    Component,
    as_bool,
    as_map,
    as_str,
    as_strs,
    env_refs,
    extension,
)
from shipper.convert.units import duration, seconds

_PUSH_PATH = "/loki/api/v1/push"
_OTLP_PATH = re.compile(r"/otlp(/v1/logs)?/?$")
# Loki's OTLP endpoint makes these resource attributes index labels by default
# (limits_config.otlp_config): the sources that were labels when the Collector shipped there.
_OTLP_LABELS = ("namespace", "pod", "container", "workload", "app")


def _url(ctx: Ctx, comp: Component, key: str) -> str | None:
    where = f"{comp.path}.{key}"
    url = as_str(comp.config.get(key), where)
    if not env_refs(url):
        return url
    if ctx.env is None:  # a file for the DaemonSet: the same variable must reach shipper
        ctx.report.differs(where, f"{url}: set SHIPPER_LOKI_URL (shipper's override of "
                           "loki.url) from the same source in the DaemonSet")
        return None
    raise Unsupported(where, f"{url}: the variable is not set", changes_lines=True,
                      resolved_by="loki.url")


def _http(ctx: Ctx, collector: Collector, comp: Component) -> None:
    """confighttp settings shared by loki and otlphttp."""
    cfg, path = comp.config, comp.path
    if cfg.get("tenant_id") is not None:
        ctx.out.set("loki.tenant_id", as_str(cfg["tenant_id"], f"{path}.tenant_id"),
                    f"{path}.tenant_id")
    for name, value in as_map(cfg.get("headers"), f"{path}.headers").items():
        where = f"{path}.headers.{name}"
        text = as_str(value, where)
        if name.lower() == "x-scope-orgid" and not env_refs(text):
            ctx.out.set("loki.tenant_id", text, where)
        elif name.lower() == "authorization":
            scheme = "loki.bearer_token_file" if text.lower().startswith("bearer") else \
                "loki.basic_auth.password_file"
            ctx.report.unmapped(where, "shipper reads credentials from files, not headers",
                                changes_lines=True, resolved_by=scheme)
        else:
            ctx.report.unmapped(where, "shipper sends no custom headers")
    tls = as_map(cfg.get("tls"), f"{path}.tls")
    for key in ("ca_file", "cert_file", "key_file"):
        if tls.get(key):
            ctx.out.set(f"loki.tls.{key}", as_str(tls[key], f"{path}.tls.{key}"),
                        f"{path}.tls.{key}")
    for key in ("ca_pem", "cert_pem", "key_pem"):
        if tls.get(key):
            ctx.report.unmapped(f"{path}.tls.{key}", "shipper reads certificates from files",
                                changes_lines=True, resolved_by=f"loki.tls.{key[:-4]}_file")
    if tls.get("insecure_skip_verify") is not None:
        ctx.out.set("loki.tls.insecure_skip_verify", as_bool(
            tls["insecure_skip_verify"], f"{path}.tls.insecure_skip_verify"),
            f"{path}.tls.insecure_skip_verify")
    if cfg.get("timeout") is not None:
        ctx.out.set("loki.timeout", duration(seconds(cfg["timeout"], f"{path}.timeout")),
                    f"{path}.timeout")
    retry = as_map(cfg.get("retry_on_failure"), f"{path}.retry_on_failure")
    if retry.get("enabled") is False or retry.get("max_elapsed_time") not in (None, 0, "0"):
        ctx.report.differs(f"{path}.retry_on_failure", "shipper retries a failed push without "
                           "giving up, holding back reading meanwhile: nothing is dropped")
    auth = as_map(cfg.get("auth"), f"{path}.auth")
    if auth.get("authenticator") is not None:
        _authenticator(ctx, collector, as_str(auth["authenticator"],
                                              f"{path}.auth.authenticator"), f"{path}.auth")


def _authenticator(ctx: Ctx, collector: Collector, name: str, where: str) -> None:
    ext = extension(collector, name, f"{where}.authenticator")
    if ext.type == "basicauth":
        client = as_map(ext.config.get("client_auth"), f"{ext.path}.client_auth")
        ctx.out.set("loki.basic_auth.username", as_str(client.get("username"),
                    f"{ext.path}.client_auth.username"), f"{ext.path}.client_auth.username")
        if client.get("password") is not None:
            ctx.report.unmapped(f"{ext.path}.client_auth.password", "shipper reads the password "
                                "from a file (mount the secret)", changes_lines=True,
                                resolved_by="loki.basic_auth.password_file")
    elif ext.type == "bearertokenauth":
        if ext.config.get("filename") is not None:
            ctx.out.set("loki.bearer_token_file", as_str(ext.config["filename"],
                        f"{ext.path}.filename"), f"{ext.path}.filename")
        else:
            ctx.report.unmapped(f"{ext.path}.token", "shipper reads the token from a file "
                                "(mount the secret)", changes_lines=True,
                                resolved_by="loki.bearer_token_file")
    else:
        raise Unsupported(ext.path, f"{ext.type}: shipper authenticates with basic auth or a "
                          "bearer token file", changes_lines=True)


def _loki(ctx: Ctx, collector: Collector, comp: Component) -> None:
    url = _url(ctx, comp, "endpoint")
    if url is not None:
        ctx.out.set("loki.url", url, f"{comp.path}.endpoint")
    _http(ctx, collector, comp)
    if comp.config.get("default_labels_enabled") is not None:
        ctx.report.differs(f"{comp.path}.default_labels_enabled", "shipper adds no exporter, "
                           "job, instance or level labels")
    ctx.report.differs(comp.path, "the Loki exporter shipped each entry as a JSON document "
                       "(body, attributes, resources) with exporter, job and level labels; "
                       "shipper ships the message as the line, extracted fields and pod metadata "
                       "as structured metadata, and the level as detected_level")


def _otlphttp(ctx: Ctx, collector: Collector, comp: Component) -> None:
    key = "logs_endpoint" if comp.config.get("logs_endpoint") else "endpoint"
    url = _url(ctx, comp, key)
    if url is not None:
        parts = urlsplit(url)
        if not _OTLP_PATH.search(parts.path):
            raise Unsupported(f"{comp.path}.{key}", f"{url} is not Loki's OTLP endpoint "
                              "(.../otlp): shipper pushes to Loki only", changes_lines=True,
                              resolved_by="loki.url")
        push = urlunsplit(parts._replace(path=_OTLP_PATH.sub("", parts.path) + _PUSH_PATH))
        ctx.out.set("loki.url", push, f"{comp.path}.{key} (Loki's OTLP endpoint; its push API)")
    _http(ctx, collector, comp)
    for source in _OTLP_LABELS:
        if source in ctx.labels.carried:
            ctx.labels.add(ctx.labels.stream, source, f"{comp.path} (Loki indexes it by "
                           "default)")
    ctx.report.differs(comp.path, "Loki's OTLP endpoint names labels after the attributes "
                       "(k8s_namespace_name, service_name...); shipper names them namespace, pod, "
                       "container, workload, app")


def convert_exporters(ctx: Ctx, collector: Collector) -> None:
    pushed = None
    for comp in collector.exporters:
        if comp.type in ("loki", "otlphttp"):
            if pushed is not None:
                ctx.report.unmapped(comp.path, f"a second destination: shipper pushes to one "
                                    f"Loki ({pushed.path} here)")
                continue
            if ctx.attempt(_loki if comp.type == "loki" else _otlphttp, ctx, collector, comp):
                pushed = comp
        elif comp.type not in ("debug", "logging"):
            ctx.report.unmapped(comp.path, f"shipper pushes to Loki only, not to {comp.type!r}")
    debug = [c for c in collector.exporters if c.type in ("debug", "logging")]
    if pushed is None and debug:
        ctx.out.set("loki.url", "", f"{debug[0].path}: a dry run, entries printed as JSON lines")
        ctx.report.mapped += 1
    elif debug:
        ctx.report.differs(debug[0].path, "shipper prints entries only in a dry run "
                           "(an empty loki.url)")
    elif pushed is None:
        ctx.report.unmapped(f"{collector.pipeline}.exporters", "no exporter shipper can push "
                            "to", changes_lines=True, resolved_by="loki.url")


# -- the Collector's own telemetry and extensions -------------------------------------------

_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "error": "error",
               "dpanic": "error", "panic": "error", "fatal": "error"}
_EXTENSIONS = {
    "health_check": "shipper serves /healthz and /ready on server.listen: point the probes "
                    "there",
    "pprof": "shipper has no profiling endpoint", "zpages": "shipper has no zpages",
    "memory_ballast": "shipper needs no ballast",
}


def _listen(ctx: Ctx, raw: object, where: str) -> None:
    address = as_str(raw, where)
    host, _, port = address.rpartition(":")
    if env_refs(host):  # the pod's IP from the environment: every interface is the same here
        host = "0.0.0.0"
    if env_refs(port) or not port.isdigit():
        raise Unsupported(where, f"{address}: expected HOST:PORT")
    ctx.out.set("server.listen", f"{host}:{port}", where)
    ctx.report.differs(where, "shipper serves its own metrics there (shipper_*, named after "
                       "Promtail's), with /healthz and /ready")


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def convert_service(ctx: Ctx, collector: Collector) -> None:
    service = as_map(collector.raw.get("service"), "service")
    telemetry = as_map(service.get("telemetry"), "service.telemetry")
    where = "service.telemetry.metrics.address"
    if (address := _dig(telemetry, "metrics", "address")) is not None:
        ctx.attempt(_listen, ctx, address, where)
    readers = _dig(telemetry, "metrics", "readers")
    for i, reader in enumerate(readers if isinstance(readers, list) else []):
        prom = _dig(reader, "pull", "exporter", "prometheus")
        if isinstance(prom, dict) and prom.get("port") is not None:
            at = f"service.telemetry.metrics.readers[{i}]"
            ctx.attempt(_listen, ctx, f"{prom.get('host') or '0.0.0.0'}:{prom['port']}", at)
    logs = as_map(telemetry.get("logs"), "service.telemetry.logs")
    if logs.get("level") is not None:
        level = _LOG_LEVELS.get(str(logs["level"]).lower())
        if level is not None:
            ctx.out.set("log.level", level, "service.telemetry.logs.level")
    for name in as_strs(service.get("extensions"), "service.extensions"):
        kind = name.split("/", 1)[0]
        if kind in _EXTENSIONS:
            ctx.report.differs(f"extensions.{name}", _EXTENSIONS[kind])
