"""Benchmark suite entry point: run the scenarios, write results/<timestamp>.json and .md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.instructions import METHODS, resolve
from benchmarks.report import machine, markdown, reference_loop_s, source, verdicts
from benchmarks.scenarios import catch_up, idle, latency, many_files, some_files
from benchmarks.sizes import QUICK, Sizes
from benchmarks.steady import steady
from benchmarks.streams import many_streams
from benchmarks.typical import typical_catch_up, typical_steady

SCENARIOS: dict[str, Callable[[Path, Sizes], dict[str, Any]]] = {
    "catch_up": catch_up, "typical_catch_up": typical_catch_up, "steady": steady,
    "typical_steady": typical_steady, "idle": idle, "latency": latency,
    "many_streams": many_streams, "many_files": many_files, "some_files": some_files,
}
RESULTS = Path(__file__).resolve().parent / "results"


def run(names: list[str], sizes: Sizes, out: Path, workdir: Path | None,
        keep: bool) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results: dict[str, Any] = {"started": started, "machine": machine(), "source": source(),
                               "sizes": dataclasses.asdict(sizes),
                               "instructions": resolve(sizes.instructions), "scenarios": {}}
    scratch = Path(tempfile.mkdtemp(prefix="shipper-bench-", dir=workdir))
    try:
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            begin = time.monotonic()
            try:
                result = SCENARIOS[name](scratch / name, sizes)
            except Exception as exc:  # one broken scenario must not lose the others' figures
                traceback.print_exc()
                result = {"error": repr(exc), "delivered": False}
            result["scenario_wall_s"] = time.monotonic() - begin
            results["scenarios"][name] = result
            print(json.dumps({k: v for k, v in result.items() if k != "trials"}),
                  file=sys.stderr, flush=True)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["machine"]["reference_loop_s_at_end"] = reference_loop_s()
    results["verdicts"] = verdicts(results)
    out.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(markdown(results))
    print(out / f"{stem}.json")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description="Run the shipper benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run (~30 s)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--workdir", type=Path, help="where log files are written (default: "
                        "the system temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the log files and agent logs")
    parser.add_argument("--set", action="append", default=[], metavar="SIZE=VALUE",
                        help="override a size, e.g. --set catchup_lines=200000 "
                        "--set steady_rates=5000,10000 --set instructions=none")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    for item in args.set:
        name, _, value = item.partition("=")
        current = getattr(sizes, name)
        parsed: Any = (tuple(int(v) for v in value.split(",")) if isinstance(current, tuple)
                       else type(current)(value))
        sizes = dataclasses.replace(sizes, **{name: parsed})
    if sizes.instructions not in METHODS:
        parser.error(f"instructions: one of {', '.join(METHODS)}")
    results = run(args.only or list(SCENARIOS), sizes, args.out, args.workdir, args.keep)
    return 0 if all(r.get("delivered") for r in results["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
