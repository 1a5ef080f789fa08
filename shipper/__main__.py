"""Entry point: `shipper run`, `shipper check-config`, `shipper convert`, `shipper demo`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from shipper import __version__
from shipper.config import Config, ConfigError, load_config
from shipper.config_files import Loaded, load_configs

if TYPE_CHECKING:
    from shipper.agent import Agent


def _invalid(exc: ConfigError) -> NoReturn:
    print(f"shipper: invalid config: {exc}", file=sys.stderr)
    raise SystemExit(2)


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _invalid(exc)


def _load_all(paths: list[str] | None) -> Loaded:
    try:
        return load_configs(paths or [])
    except ConfigError as exc:
        _invalid(exc)


def _build(config: Config, once: bool = False) -> Agent:
    """The whole agent, without starting it: what the config names must be usable."""
    from shipper.agent import Agent

    try:
        return Agent(config, once=once)
    except ConfigError as exc:
        _invalid(exc)


def _run(config: Config, once: bool, converted: list[tuple[str, int]] | None = None) -> int:
    import logging

    from shipper.logs import setup_logging

    setup_logging(config.log.level)
    for line, unmapped in converted or []:  # one line per Collector config run as converted
        logging.getLogger("shipper.convert").log(logging.WARNING if unmapped else logging.INFO,
                                                 line, extra={"not_mapped": unmapped})
    agent = _build(config, once)
    # The pipeline allocates millions of short-lived tuples; at the default threshold (700) the
    # cyclic collector ran thousands of times a second over them (measured: up to 30% of CPU).
    # Objects from startup are frozen out of its sight; young ones are collected less often.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        asyncio.run(agent.run())
    except BrokenPipeError:  # a dry run piped into `head`: the reader has seen enough
        sys.stderr.close()
    return 0


def _demo() -> int:
    """Ship the bundled example logs in a dry run: what would go to Loki, as JSON lines."""
    from shipper.examples import install_examples

    with tempfile.TemporaryDirectory(prefix="shipper-demo-") as root:
        pattern = install_examples(root)
        base = _load(None)
        config = dataclasses.replace(
            base,
            inputs=dataclasses.replace(base.inputs, paths=(pattern,)),
            positions=dataclasses.replace(base.positions, path=""),
            server=dataclasses.replace(base.server, listen=""),
            kubernetes=dataclasses.replace(base.kubernetes, enabled="false",
                                           node_name=base.kubernetes.node_name or "demo-node"),
            loki=dataclasses.replace(base.loki, url=""),
        )
        return _run(config, once=True)


def _convert(source: str, path: str) -> int:
    """Print the shipper config for another agent's config; the report goes to stderr.
    0: everything mapped; 1: something did not; 2: not such a config."""
    from shipper.convert import NotCollector, convert_otelcol

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(f"shipper convert {source}: cannot read {path}: {reason}", file=sys.stderr)
        return 2
    try:
        conversion = convert_otelcol(text, name=path)
    except NotCollector as exc:
        print(f"shipper convert {source}: {path}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(conversion.text)
    sys.stderr.write(conversion.report.render(path))
    return 1 if conversion.report.not_mapped else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shipper", description="Ship Kubernetes container "
                                     "logs to Loki without losing a line.")
    parser.add_argument("--version", action="version", version=f"shipper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", action="append", help="YAML config file, shipper's or an "
                     "OpenTelemetry Collector's; repeat to merge files, later over earlier "
                     "(default: built-in DaemonSet defaults)")
    run.add_argument("--once", action="store_true",
                     help="read every file to its end, deliver, save positions and exit")
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", action="append", required=True)
    convert = sub.add_parser("convert", help="print the shipper config for another agent's "
                             "config, with a report of what did not map on stderr")
    formats = convert.add_subparsers(dest="source", required=True)
    otelcol = formats.add_parser("otelcol", help="an OpenTelemetry Collector config")
    otelcol.add_argument("file", help="the Collector's config file (- for stdin)")
    sub.add_parser("demo", help="dry run over bundled example logs: prints what would be pushed")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return _demo()
    if args.command == "convert":
        return _convert(args.source, args.file)
    loaded = _load_all(args.config)
    if args.command == "check-config":
        _build(loaded.config)
        for line, _ in loaded.converted:
            print(line, file=sys.stderr)
        print(f"{', '.join(args.config)}: ok")
        return 0
    return _run(loaded.config, args.once, loaded.converted)


if __name__ == "__main__":
    sys.exit(main())
