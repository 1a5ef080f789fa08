"""Run the real agent in tests: in this process (as an asyncio task) or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from shipper.agent import Agent
from shipper.config import Config, parse_config


def config_dict(root: Path, url: str, pipeline: list[dict[str, Any]] | None = None,
                **sections: dict[str, Any]) -> dict[str, Any]:
    """A config for tests: fast batching and rescans, positions and logs under root."""
    raw: dict[str, Any] = {
        "inputs": {"paths": [str(root / "var/log/containers/*.log")], "rescan_interval": "500ms"},
        "positions": {"path": str(root / "positions.json"), "write_interval": "100ms"},
        "loki": {"url": url, "min_backoff": "50ms", "max_backoff": "500ms", "timeout": "2s"},
        "batch": {"size": 100, "timeout": "200ms"},
        "server": {"listen": "127.0.0.1:0"},
        "kubernetes": {"enabled": "false", "node_name": "node-1"},
        "shutdown": {"deadline": "5s"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    if pipeline is not None:
        raw["pipeline"] = pipeline
    return raw


def make_config(root: Path, url: str, pipeline: list[dict[str, Any]] | None = None,
                **sections: dict[str, Any]) -> Config:
    return parse_config(yaml.safe_dump(config_dict(root, url, pipeline, **sections)), env={})


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Agent]:
    """The agent running in this loop; stopped (as by SIGTERM) on exit."""
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        while not agent.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (without blocking the loop) until predicate() holds; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def start_subprocess(config_path: Path, *args: str, prefix: Sequence[str] = (),
                     stderr: IO[bytes] | int = subprocess.PIPE,
                     command: str = "run") -> subprocess.Popen[bytes]:
    """`prefix`: a command that wraps the agent's (e.g. setpriv to drop privileges)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SHIPPER_LOKI_URL", None)
    return subprocess.Popen([*prefix, sys.executable, "-m", "shipper", command, "--config",
                             str(config_path), *args], env=env, stdout=subprocess.PIPE,
                            stderr=stderr)


def terminate(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
              timeout: float = 30) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace")
