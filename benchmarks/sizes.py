"""Benchmark sizes: every scenario's, for the full run and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sizes:
    """Every scenario's size; QUICK shrinks them for the smoke run in CI."""

    catchup_lines: int = 1_000_000
    catchup_files: int = 20
    steady_files: int = 50
    steady_seconds: float = 60.0
    steady_rates: tuple[int, ...] = (2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000)
    steady_first_rate: int = 10_000  # the walk starts here (see steady.py)
    steady_rotate_bytes: int = 1024 * 1024  # small enough that files rotate during a trial
    steady_quota: float = 0.1  # cores: 100m
    writer_processes: int = 2  # one holds 30,000 lines/s here with ~0.2 core, little to spare
    idle_files: int = 200
    idle_seconds: float = 120.0
    idle_windows: int = 4  # the idle span in equal windows: their spread is the noise
    latency_rate: float = 50.0
    latency_files: int = 10
    latency_seconds: float = 60.0
    streams_files: int = 500
    streams_pods: int = 110
    streams_lines_per_file: int = 200
    streams_rate: float = 2_000.0
    streams_seconds: float = 30.0
    many_files: int = 2_000
    some_files: int = 500
    files_lines_per_file: int = 300
    typical_rate: int = 5_000  # issue 11: sustained inside the 100m quota
    instructions: str = "auto"  # perf, callgrind, none, or auto: perf if it counts, else callgrind
    callgrind_lines: int = 200_000  # the scaled-down catch-up run under callgrind
    batch_timeout: float = 10.0  # the default; the quick run shortens the wait for a last batch


# The smoke run checks that the suite works, not the budget: its steady trial gets half a core,
# since a trial of seconds in 100m on a busy CI machine is decided by start-up and scheduling
# noise.
# batch_timeout 2 s and 6 s trials: a line waits up to the agent's 1 s read tick, then up to
# batch.timeout; the steady verdict allows a lag of twice batch.timeout, and compares the first
# third of the trial with the last (in 3 s trials nothing had arrived in the first second).
QUICK = Sizes(catchup_lines=20_000, steady_files=10, steady_seconds=6.0, steady_rates=(2_000,),
              steady_first_rate=2_000, steady_quota=0.5, steady_rotate_bytes=64 * 1024,
              idle_files=20, idle_seconds=2.0, idle_windows=2, latency_files=5,
              latency_seconds=2.0, streams_files=40, streams_pods=11, streams_lines_per_file=50,
              streams_rate=500.0, streams_seconds=2.0, many_files=40, some_files=10,
              files_lines_per_file=50, typical_rate=2_000, instructions="none",
              batch_timeout=2.0)
