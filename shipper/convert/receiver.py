"""The filelog receiver: which files (include, exclude), how they are read (start_at,
max_log_size, multiline, storage), then its operators."""

from __future__ import annotations

from shipper.convert.context import Ctx
from shipper.convert.fields import source_of
from shipper.convert.flow import convert_operators
from shipper.convert.report import Unsupported
from shipper.convert.source import Collector, Component, as_map, as_str, as_strs, extension
from shipper.convert.units import duration, go_regex, seconds, size

KUBELET_DIRS = ("/var/log/containers/", "/var/log/pods/")
# Keys that tune how the Collector itself reads, which shipper does its own way: no effect on
# which lines are shipped or how they look.
_NATIVE = {
    "poll_interval": "shipper is woken by inotify; inputs.rescan_interval (10s) is a safety net",
    "fingerprint_size": "shipper knows a file by its device and inode",
    "max_concurrent_files": "shipper reads every matched file",
    "max_batches": "shipper reads every matched file",
    "initial_buffer_size": "shipper reads in inputs.read_chunk_bytes chunks",
    "force_flush_period": "shipper ships a file's unterminated last line once the file is done",
    "retry_on_failure": "shipper retries every failed push, holding back reading meanwhile",
    "acquire_fs_lock": "shipper never locks the files it reads",
    "preserve_leading_whitespaces": "shipper keeps a message as the runtime wrote it",
    "preserve_trailing_whitespaces": "shipper keeps a message as the runtime wrote it",
}
_CHANGES_FILES = {
    "exclude_older_than": "shipper reads every matched file, however old",
    "ordering_criteria": "shipper reads every matched file, not the newest N",
    "compression": "shipper does not read compressed files",
    "header": "shipper has no header parsing",
}


def is_kubelet(component: Component) -> bool:
    try:
        paths = as_strs(component.config.get("include"), f"{component.path}.include")
    except Unsupported:
        return False
    return bool(paths) and all(p.startswith(KUBELET_DIRS) for p in paths)


def _globs(ctx: Ctx, comp: Component, key: str) -> None:
    where = f"{comp.path}.{key}"
    globs = as_strs(comp.config.get(key), where)
    if any("**" in g for g in globs):
        raise Unsupported(where, "** matches any depth in the Collector; shipper's globs match "
                          "one level per *", changes_lines=True, resolved_by=f"inputs.{key}")
    ctx.out.set("inputs.paths" if key == "include" else "inputs.exclude", globs, where)


def _storage(ctx: Ctx, collector: Collector, comp: Component) -> None:
    where = f"{comp.path}.storage"
    if comp.config.get("storage") is None:
        ctx.report.differs(comp.path, "no storage: the Collector kept its offsets in memory; "
                           "shipper saves positions to positions.path "
                           "(/var/lib/shipper/positions.json): mount a hostPath there")
        return
    ext = extension(collector, as_str(comp.config["storage"], where), where)
    if ext.type != "file_storage":
        raise Unsupported(where, f"{ext.name}: shipper keeps positions in a file")
    directory = as_str(ext.config.get("directory", "/var/lib/otelcol/file_storage"),
                       f"{ext.path}.directory").rstrip("/")
    ctx.out.set("positions.path", f"{directory}/shipper-positions.json", f"{where} ({ext.path})")


def _max_line(ctx: Ctx, comp: Component) -> None:
    where = f"{comp.path}.max_log_size"
    ctx.out.set("inputs.max_line_bytes", size(comp.config["max_log_size"], where), where)


def _multiline(ctx: Ctx, comp: Component) -> None:
    where = f"{comp.path}.multiline"
    cfg = as_map(comp.config["multiline"], where)
    if cfg.get("omit_pattern"):
        ctx.report.unmapped(f"{where}.omit_pattern", "shipper keeps the pattern in the entry")
    modes = {"line_start_pattern": "first_line", "line_end_pattern": "last_line"}
    given = [k for k in modes if cfg.get(k) is not None]
    if len(given) != 1:
        raise Unsupported(where, "needs exactly one of line_start_pattern and line_end_pattern",
                          changes_lines=True)
    options: dict[str, object] = {
        modes[given[0]]: go_regex(as_str(cfg[given[0]], f"{where}.{given[0]}"),
                                  f"{where}.{given[0]}")}
    flush = seconds(comp.config.get("force_flush_period", "500ms"),
                    f"{comp.path}.force_flush_period")
    options["max_wait"] = duration(flush if flush > 0 else 0.5)
    if ctx.scope.kubelet:
        ctx.report.differs(where, "the Collector applies it to the runtime's raw lines (before "
                           "any container parsing); shipper to the messages, which is what it "
                           "is meant for")
    ctx.stage("multiline", options, where)


def _added(ctx: Ctx, comp: Component, key: str) -> None:
    where = f"{comp.path}.{key}"
    fields = {}
    for name, value in as_map(comp.config[key], where).items():
        if source_of(name) and key == "resource":
            raise Unsupported(f"{where}.{name}", "sets Kubernetes metadata: shipper takes it "
                              "from the pod")
        fields[name] = as_str(value, f"{where}.{name}")
    if fields:
        ctx.stage("set", {"fields": fields}, where)


def convert_filelog(ctx: Ctx, collector: Collector, comp: Component) -> None:
    cfg = comp.config
    ctx.attempt(_globs, ctx, comp, "include")
    if cfg.get("exclude"):
        ctx.attempt(_globs, ctx, comp, "exclude")
    start_at = cfg.get("start_at", "end")
    if start_at != "beginning":
        default = "" if "start_at" in cfg else " (the default)"
        ctx.report.differs(f"{comp.path}.start_at", f"{start_at}{default}: the Collector skips "
                           "what files hold when it starts; shipper resumes from its positions "
                           "and reads a file it has never seen from the start")
    ctx.attempt(_storage, ctx, collector, comp)
    if cfg.get("max_log_size") is not None:
        ctx.attempt(_max_line, ctx, comp)
    for key in ("include_file_path", "include_file_name", "include_file_path_resolved",
                "include_file_name_resolved", "include_file_record_number"):
        if cfg.get(key) is True and key != "include_file_path":
            ctx.report.differs(f"{comp.path}.{key}", "shipper ships no file attributes (a file "
                               "outside the kubelet layout gets a filename label)")
    if cfg.get("encoding", "utf-8") not in ("utf-8", "utf8", "nop", "ascii"):
        ctx.report.unmapped(f"{comp.path}.encoding", f"{cfg['encoding']}: shipper reads UTF-8")
    if cfg.get("delete_after_read"):
        ctx.report.unmapped(f"{comp.path}.delete_after_read", "shipper never deletes files")
    for key, why in _NATIVE.items():
        if key in cfg:
            ctx.done_natively(f"{comp.path}.{key}", why)
    for key, why in _CHANGES_FILES.items():
        if key in cfg:
            ctx.report.unmapped(f"{comp.path}.{key}", why, changes_lines=True)
    if cfg.get("multiline") is not None:
        ctx.attempt(_multiline, ctx, comp)
    for key in ("attributes", "resource"):
        if cfg.get(key):
            ctx.attempt(_added, ctx, comp, key)
    convert_operators(ctx, cfg.get("operators"), f"{comp.path}.operators")


def convert_receivers(ctx: Ctx, collector: Collector) -> None:
    filelogs = [r for r in collector.receivers if r.type == "filelog"]
    for receiver in collector.receivers:
        if receiver.type != "filelog":
            ctx.report.unmapped(receiver.path, f"shipper reads container log files only; "
                                f"{receiver.type!r} logs are not collected")
    if not filelogs:
        ctx.report.unmapped(f"{collector.pipeline}.receivers", "no filelog receiver: nothing "
                            "here reads files, which is all shipper does", changes_lines=True)
        return
    convert_filelog(ctx, collector, filelogs[0])
    for extra in filelogs[1:]:
        ctx.report.unmapped(extra.path, f"a second filelog receiver: shipper reads one set of "
                            f"globs with one pipeline; only {filelogs[0].path} was converted",
                            changes_lines=True, resolved_by="inputs.paths")
