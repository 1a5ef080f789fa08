"""The benchmark suite keeps working: its verdict helpers, and a quick run of every scenario."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.instructions import PerfCounter, perf_counts
from benchmarks.profile import own_time_from_raw
from benchmarks.scenarios import percentile
from benchmarks.sizes import QUICK
from benchmarks.steady import highest, lag_verdict
from benchmarks.workload import TRACE_ENTRIES, TRACE_LINES, Mix, Workload

REPO = Path(__file__).resolve().parent.parent


def test_lag_that_grows_is_not_kept_up_even_under_the_limit() -> None:
    windows = [[100 + s, 200 + s * 300] for s in range(30)]  # +0.3 s of lag per second
    verdict = lag_verdict(windows, 100, 129, timeout=10.0)
    assert verdict["max_lag_s"] < 20 and not verdict["lag_ok"]


def test_flat_lag_under_twice_the_timeout_is_kept_up() -> None:
    windows = [[100 + s, 300 + (s % 3) * 100] for s in range(30)]
    verdict = lag_verdict(windows, 100, 129, timeout=10.0)
    assert verdict["lag_ok"] and verdict["max_lag_s"] == 0.5


def test_flat_lag_over_twice_the_timeout_is_not_kept_up() -> None:
    windows = [[100 + s, 21_000] for s in range(30)]
    assert not lag_verdict(windows, 100, 129, timeout=10.0)["lag_ok"]


def test_percentile_of_a_histogram() -> None:
    hist = [[10, 50], [20, 49], [900, 1]]
    assert percentile(hist, 0.5) == 10 and percentile(hist, 0.99) == 20
    assert percentile(hist, 1.0) == 900


def test_the_highest_rate_kept_up_is_below_the_first_failure() -> None:
    trials = [{"rate": r, "ok": ok} for r, ok in ((5, True), (10, True), (15, False), (20, True))]
    assert highest(trials, "ok") == 10
    assert highest([{"rate": 5, "ok": False}], "ok") == 0


def test_expected_entries_count_traces_as_one_and_dropped_lines_as_none(tmp_path: Path) -> None:
    mix = Mix(json_share=0.5, json_levels=("debug", "info"), drop_json_levels=frozenset({"debug"}),
              java_every=2, trace_every=10)
    work = Workload(tmp_path, 2, mix=mix, docker_every=0)
    work.prewrite(1000, 0, chunk=300)
    work.close()
    assert [f.java for f in work.files] == [False, True]
    assert work.files[1].pod.container.startswith("java")
    for f in work.files:
        physical = f.pod.file.read_text().splitlines()
        logical, part = [], ""
        for line in physical:
            _, _, tag, message = line.split(" ", 3)
            assert not (tag == "P" and message.startswith("{"))  # JSON lines stay whole
            part += message
            if tag == "F":
                logical.append(part)
                part = ""
        blocks = logical.count(TRACE_LINES[0])
        assert blocks > 5 if f.java else blocks == 0
        dropped = sum(m.startswith('{"level": "debug"') for m in logical)
        assert f.lines == len(physical)
        assert f.dropped == dropped > 0
        assert f.entries == len(logical) - dropped - blocks * (len(TRACE_LINES) - TRACE_ENTRIES)


def test_perf_attaches_to_a_running_process_and_counts_until_stopped() -> None:
    if not perf_counts("task-clock"):
        pytest.skip("no perf here")
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        counter = PerfCounter(proc.pid, "task-clock")
        time.sleep(0.3)
        assert counter.stop() > 100  # ms of CPU: it ran the whole window
    finally:
        proc.kill()
        proc.wait()


def test_own_time_counts_the_leaf_and_inclusive_time_each_frame_once(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text("main (a.py:1);f (a.py:5);g (a.py:9) 3\n"
                   "main (a.py:1);f (a.py:6) 1\n"
                   "main (a.py:1);f (a.py:5);f (a.py:7) 2\n")
    own, inclusive, total = own_time_from_raw(raw)
    assert total == 6
    assert own == {"g (a.py)": 3, "f (a.py)": 3}
    assert inclusive["f (a.py)"] == 6 and inclusive["main (a.py)"] == 6


def test_quick_suite_delivers_every_line_and_reports_sane_figures(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    [result_file] = tmp_path.glob("*.json")
    results = json.loads(result_file.read_text())
    undelivered = {name: result for name, result in results["scenarios"].items()
                   if not result["delivered"]}
    assert not undelivered, json.dumps(undelivered)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / result_file.with_suffix(".md").name).read_text().count("| catch_up |") >= 2
    scenarios = results["scenarios"]
    assert set(scenarios) == {"catch_up", "typical_catch_up", "steady", "typical_steady", "idle",
                              "latency", "many_streams", "many_files", "some_files"}
    for name, result in scenarios.items():
        assert "error" not in result, (name, result)
        assert 10 < result["peak_rss_mib"] < 1024, name

    catch_up = scenarios["catch_up"]
    assert catch_up["lines"] >= QUICK.catchup_lines
    assert catch_up["entries_received"] == catch_up["entries_expected"] > 0.9 * catch_up["lines"]
    assert catch_up["agent_cpu_s"] > 0 and catch_up["lines_per_cpu_s"] > 0

    [trial] = scenarios["steady"]["trials"]
    assert trial["rate"] == 2_000 and trial["achieved_rate"] > 1_000
    assert trial["entries_received"] > 0 and trial["rotations"] > 0

    # Exact counts through the pipeline: traces joined, debug JSON lines dropped.
    for name in ("typical_catch_up", "typical_steady"):
        typical = scenarios[name]
        assert typical["entries_received"] == typical["entries_expected"], name
        assert typical["dropped_expected"] > 0, name
    assert scenarios["typical_catch_up"]["entries_expected"] < scenarios["catch_up"][
        "entries_expected"] - scenarios["typical_catch_up"]["dropped_expected"]
    assert scenarios["typical_steady"]["rotations"] > 0

    for name, files in (("many_files", QUICK.many_files), ("some_files", QUICK.some_files)):
        assert scenarios[name]["files"] == files
        assert scenarios[name]["entries_received"] == scenarios[name]["entries_expected"] > 0

    idle = scenarios["idle"]
    assert idle["delivered"] and idle["cpu_percent_of_core"] >= 0
    assert len(idle["window_cpu_percents"]) == QUICK.idle_windows

    latency = scenarios["latency"]
    assert latency["entries_received"] == latency["entries_expected"] > 0
    assert 0 <= latency["p50_s"] <= latency["p99_s"] <= latency["max_s"]

    streams = scenarios["many_streams"]
    assert streams["entries_received"] == streams["entries_expected"] > 0
    assert streams["pods_cached"] == QUICK.streams_pods
    assert streams["loki_streams"] == QUICK.streams_files  # one per (namespace, container, app)
