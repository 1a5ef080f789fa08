"""Benchmark harness: the agent and the sink as processes, measured through /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1 cpu controller
REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread (by thread id and name): the event loop versus helper threads
    such as the inotify watcher's."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[f"{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of the process's live threads in ns (/proc/<pid>/task/*/schedstat, the
    scheduler's own sum_exec_runtime), where /proc/<pid>/stat counts 10 ms clock ticks. A
    thread that ended between two readings is missing from the second: for idle, not catch-up."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def runqueue_wait_seconds(pid: int) -> float:
    """Time the main thread was runnable but waiting for a CPU (/proc/<pid>/schedstat): on a
    busy machine this, not the agent, is where wall time goes."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def status_kib(pid: int, key: str) -> int:
    """A memory figure from /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _env(repo: Path = REPO) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SHIPPER_LOKI_URL", "KUBERNETES_SERVICE_HOST", "NODE_NAME")}
    env["PYTHONPATH"] = str(repo)
    return env


class Sink:
    """The Loki-protocol sink (benchmarks/sink.py) in its own process."""

    def __init__(self, lag: bool = False) -> None:
        args = [sys.executable, "-m", "benchmarks.sink", *(["--lag"] if lag else [])]
        self.proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/loki/api/v1/push"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            return dict(json.load(r))

    def measure_window(self, since_ns: int, until_ns: int) -> None:
        """Only lines written in [since, until) count in the lag histogram."""
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/window?{since_ns},{until_ns}", timeout=10):
            pass

    def entries(self) -> int:
        return int(self.stats()["entries"])

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def wait_entries(self, expected: int, timeout: float) -> bool:
        return wait(lambda: self.entries() >= expected, timeout, 0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def agent_config(root: Path, pattern: str, url: str, port: int,
                 pipeline: list[dict[str, Any]] | None = None,
                 **sections: dict[str, Any]) -> Path:
    """The default config, pointed at the workload, the sink and a local metrics port; with
    `pipeline`, those rules (without, no `pipeline:` key: an agent older than it runs too)."""
    raw: dict[str, Any] = {
        "inputs": {"paths": [pattern]},
        "positions": {"path": str(root / "positions.json")},
        "loki": {"url": url},
        "server": {"listen": f"127.0.0.1:{port}"},
        "kubernetes": {"enabled": "false", "node_name": "bench-node"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    if pipeline is not None:
        raw["pipeline"] = pipeline
    path = root / "shipper.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class CpuQuota:
    """A cgroup v1 CPU quota (quota_us per period_us), created for one run and removed after."""

    def __init__(self, name: str, quota_us: int, period_us: int = 100_000) -> None:
        self.path = CGROUP_CPU / name
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(period_us))
        (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))

    @staticmethod
    def available() -> bool:
        return os.access(CGROUP_CPU, os.W_OK) and (CGROUP_CPU / "cgroup.procs").exists()

    def throttling(self) -> dict[str, int]:
        """nr_periods, nr_throttled, throttled_time (ns) from cpu.stat."""
        return {k: int(v) for k, v in
                (line.split() for line in (self.path / "cpu.stat").read_text().splitlines())}

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


@dataclass(frozen=True, slots=True)
class AgentCommand:
    """Which agent runs, and how: this checkout's by default; another commit's checkout with
    its own venv to compare; under a wrapper such as valgrind, which slows start-up ~50x."""

    python: str = sys.executable
    repo: Path = REPO
    wrapper: tuple[str, ...] = ()
    startup_timeout: float = 30.0

    def args(self, config: Path) -> list[str]:
        return [*self.wrapper, self.python, "-m", "shipper", "run", "--config", str(config)]


THIS_AGENT = AgentCommand()  # this checkout's agent, as the suite's own Python runs it


class Agent:
    """`python -m shipper run --config FILE` as its own process, optionally inside a CPU quota:
    a shell joins the cgroup and then execs the agent, so even its start-up is inside it."""

    def __init__(self, config: Path, port: int, log: Path, quota: CpuQuota | None = None,
                 command: AgentCommand = THIS_AGENT) -> None:
        args = command.args(config)
        if quota is not None:
            args = ["sh", "-c", f'echo $$ > {quota.path / "cgroup.procs"} && exec "$@"', "sh",
                    *args]
        self.port = port
        self._log = log.open("wb")
        self.proc = subprocess.Popen(args, cwd=command.repo, env=_env(command.repo),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited with {self.proc.returncode}; see {self._log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30) -> None:
        if not wait(self.healthy, timeout, 0.05):
            raise RuntimeError(f"agent not healthy within {timeout}s; see {self._log.name}")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_ns(self) -> int:
        return cpu_ns(self.pid)

    def thread_cpu(self) -> dict[str, float]:
        return thread_cpu_seconds(self.pid)

    def runqueue_wait(self) -> float:
        return runqueue_wait_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return status_kib(self.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        return status_kib(self.pid, "VmRSS") / 1024

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def running_agent(config: Path, port: int, log: Path, quota: CpuQuota | None = None,
                  command: AgentCommand = THIS_AGENT) -> Iterator[Agent]:
    agent = Agent(config, port, log, quota, command)
    try:
        agent.wait_healthy(command.startup_timeout)
        yield agent
    finally:
        agent.stop()
