"""Entry point: `shipper run`, `shipper check-config`, `shipper convert`, `shipper demo`.

The imports are inside the functions: `cli` installs the SIGTERM handler before they run
(asyncio and yaml alone take ~50 ms), so that the process can be stopped cleanly at once.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

from shipper import early_stop

if TYPE_CHECKING:
    import argparse

    from shipper.agent import Agent
    from shipper.config import Config


def _build(config: Config, once: bool = False) -> Agent:
    """The whole agent, without starting it: what the config names must be usable."""
    from shipper.agent import Agent
    from shipper.checks import check_files

    check_files(config)
    return Agent(config, once=once)


def _check_listen(agent: Agent) -> None:
    """Bind server.listen and let it go: a port in use is found by check-config, as by run."""
    import asyncio

    async def bind_and_release() -> None:
        await agent.server.start()
        await agent.server.stop()

    asyncio.run(bind_and_release())


def _run(config: Config, once: bool, converted: list[tuple[str, int]] | None = None) -> int:
    import asyncio
    import gc
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
        asyncio.run(agent.run())  # may raise ConfigError: an address is usable once bound
    except BrokenPipeError:  # a dry run piped into `head`: the reader has seen enough
        sys.stderr.close()
    return 0


def _demo() -> int:
    """Ship the bundled example logs in a dry run: what would go to Loki, as JSON lines."""
    import dataclasses
    import tempfile

    from shipper.config import load_config
    from shipper.examples import DEMO_CONFIG, install_examples

    with tempfile.TemporaryDirectory(prefix="shipper-demo-") as root:
        pattern = install_examples(root)
        base = load_config(DEMO_CONFIG)
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
    from pathlib import Path

    from shipper.convert.otelcol import convert_otelcol
    from shipper.convert.source import NotCollector

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


def _pairs(flag: str, items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"shipper: {flag} expects KEY=VALUE, got {item!r}", file=sys.stderr)
            raise SystemExit(2)
        pairs[key] = value
    return pairs


def _inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shipper.config_files import load_configs
    from shipper.pipeline.inspect import Pod, inspect

    config = load_configs([args.config] if args.config else []).config  # a Collector's too
    try:
        sample = (sys.stdin.buffer.read() if args.sample == "-"
                  else Path(args.sample).read_bytes())
    except OSError as exc:
        print(f"shipper: cannot read {args.sample}: {exc.strerror}", file=sys.stderr)
        return 2
    pod = Pod(args.namespace, args.pod, args.container, args.node,
              _pairs("--label", args.label), _pairs("--annotation", args.annotation))
    inspect(config, sample, pod, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    from shipper import __version__
    from shipper.config import ConfigError
    from shipper.config_files import load_configs

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
    check = sub.add_parser("check-config", help="validate a config file, the files it names and "
                           "its listen address, and exit")
    check.add_argument("--config", action="append", required=True)
    convert = sub.add_parser("convert", help="print the shipper config for another agent's "
                             "config, with a report of what did not map on stderr")
    formats = convert.add_subparsers(dest="source", required=True)
    otelcol = formats.add_parser("otelcol", help="an OpenTelemetry Collector config")
    otelcol.add_argument("file", help="the Collector's config file (- for stdin)")
    sub.add_parser("demo", help="dry run over bundled example logs: prints what would be pushed")
    inspect = sub.add_parser(
        "inspect", help="run a config's pipeline over a sample and show each entry after each "
        "stage, as it would run for the pod described by the flags")
    inspect.add_argument("--config", help="YAML config file (default: built-in defaults)")
    inspect.add_argument("sample", nargs="?", default="-",
                         help="a container log file (CRI or Docker) or plain lines; - is stdin")
    inspect.add_argument("--namespace", default="default")
    inspect.add_argument("--pod", default="sample-0")
    inspect.add_argument("--container", default="app")
    inspect.add_argument("--node", default="node")
    inspect.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="a pod label (repeatable)")
    inspect.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                         help="a pod annotation, e.g. shipper.io/multiline=java (repeatable)")
    args = parser.parse_args(argv)

    try:
        if args.command == "demo":
            return _demo()
        if args.command == "convert":
            return _convert(args.source, args.file)
        if args.command == "inspect":
            return _inspect(args)
        loaded = load_configs(args.config or [])
        if args.command == "check-config":
            _check_listen(_build(loaded.config))
            for line, _ in loaded.converted:
                print(line, file=sys.stderr)
            print(f"{', '.join(args.config)}: ok")
            return 0
        return _run(loaded.config, args.once, loaded.converted)
    except ConfigError as exc:  # the one way a wrong config ends the process: key and reason
        print(f"shipper: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cli() -> NoReturn:
    """The process (`shipper`, `python -m shipper`); tests call `main` instead."""
    early_stop.install()  # until Agent.run installs its own handler
    sys.exit(main())


if __name__ == "__main__":
    cli()
