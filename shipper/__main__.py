"""Entry point: `shipper run`, `shipper check-config`, `shipper demo`.

The imports are inside the functions: `cli` installs the SIGTERM handler before they run
(asyncio and yaml alone take ~50 ms), so that the process can be stopped cleanly at once.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import argparse
    from types import FrameType

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


def _run(config: Config, once: bool) -> int:
    import asyncio
    import gc

    from shipper.logs import setup_logging

    setup_logging(config.log.level)
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

    from shipper.config import load_config
    from shipper.pipeline.inspect import Pod, inspect

    config = load_config(args.config)
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
    from shipper.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="shipper", description="Ship Kubernetes container "
                                     "logs to Loki without losing a line.")
    parser.add_argument("--version", action="version", version=f"shipper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent")
    run.add_argument("--config", help="YAML config file (default: built-in DaemonSet defaults)")
    run.add_argument("--once", action="store_true",
                     help="read every file to its end, deliver, save positions and exit")
    check = sub.add_parser("check-config", help="validate a config file, the files it names and "
                           "its listen address, and exit")
    check.add_argument("--config", required=True)
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
        if args.command == "inspect":
            return _inspect(args)
        config = load_config(args.config)
        if args.command == "check-config":
            _check_listen(_build(config))
            print(f"{args.config}: ok")
            return 0
        return _run(config, args.once)
    except ConfigError as exc:  # the one way a wrong config ends the process: key and reason
        print(f"shipper: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _stop_before_start(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def cli() -> NoReturn:
    """The process (`shipper`, `python -m shipper`); tests call `main` instead."""
    # kubelet may stop the pod at any moment, also before the agent's own handler is installed
    # (by Agent.run, which then takes over). Until then nothing has been read, so leaving at
    # once is a clean stop; Python's default would die of the signal (exit 143).
    signal.signal(signal.SIGTERM, _stop_before_start)
    sys.exit(main())


if __name__ == "__main__":
    cli()
