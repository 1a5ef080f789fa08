"""The benchmark suite keeps working: its verdict helpers, and a quick run of every scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.profile import own_time_from_raw
from benchmarks.scenarios import QUICK, _percentile
from benchmarks.steady import lag_verdict

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
    assert _percentile(hist, 0.5) == 10 and _percentile(hist, 0.99) == 20
    assert _percentile(hist, 1.0) == 900


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
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    results = json.loads(result_file.read_text())
    assert (tmp_path / result_file.with_suffix(".md").name).read_text().count("| catch_up |") >= 2
    scenarios = results["scenarios"]
    assert set(scenarios) == {"catch_up", "steady", "idle", "latency", "many_streams"}
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

    assert scenarios["idle"]["delivered"] and scenarios["idle"]["cpu_percent_of_core"] >= 0

    latency = scenarios["latency"]
    assert latency["entries_received"] == latency["entries_expected"] > 0
    assert 0 <= latency["p50_s"] <= latency["p99_s"] <= latency["max_s"]

    streams = scenarios["many_streams"]
    assert streams["entries_received"] == streams["entries_expected"] > 0
    assert streams["pods_cached"] == QUICK.streams_pods
    assert streams["loki_streams"] == QUICK.streams_files  # one per (namespace, container, app)
