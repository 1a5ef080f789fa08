"""Soak: the agent subprocess under steady writes, kubelet rotation and periodic Loki outages.

Not a test (pytest does not collect it): run it by hand, see README.md beside it. Writes its
figures as JSON: lines written, delivered, missing, duplicates, the agent's peak RSS (VmHWM)
and the largest write-to-delivery lag.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.agent import start_subprocess  # noqa: E402
from tests.support.faults import free_port, scrape, write_config  # noqa: E402
from tests.support.kubelet import PodLog, cri_ts  # noqa: E402
from tests.support.loki_receiver import LokiReceiver, ReceivedEntry  # noqa: E402

LINE_BYTES = 200  # message length: 2 MB/s is then 10k lines/s, the agent's budgeted load


class Tally(list[ReceivedEntry]):
    """Stands in for the receiver's entry list: counts each numbered line instead of keeping
    it (ten minutes at a few MB/s would not fit in memory), and tracks the largest lag."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[int, bytearray] = {}  # pod -> deliveries per line number
        self.max_lag_ns = 0
        self.lock = threading.Lock()

    def __iadd__(self, stored: Any) -> Tally:  # the receiver does `self._entries += stored`
        now = time.time_ns()
        with self.lock:
            for entry in stored:
                pod, seq = entry.line.split(" ", 2)[:2]
                counts = self.counts.setdefault(int(pod[1:]), bytearray())
                n = int(seq)
                if n >= len(counts):
                    counts.extend(bytes(n + 1 - len(counts) + 65536))
                counts[n] = min(counts[n] + 1, 255)
                self.max_lag_ns = max(self.max_lag_ns, now - entry.timestamp_ns)
        return self

    def delivered(self) -> int:
        with self.lock:
            return sum(sum(c) for c in self.counts.values())

    def audit(self, written: list[int]) -> tuple[int, int, int]:
        """(distinct lines delivered, missing, duplicates)"""
        with self.lock:
            seen = missing = dups = 0
            for pod, total in enumerate(written):
                counts = self.counts.get(pod, bytearray())
                for n in range(total):
                    c = counts[n] if n < len(counts) else 0
                    seen += c > 0
                    missing += c == 0
                    dups += max(c - 1, 0)
            return seen, missing, dups


class Writer(threading.Thread):
    """Pods writing numbered CRI lines with real timestamps; kubelet rotates each file at
    rotate_bytes, gzips older generations and keeps at most `keep` rotated files."""

    def __init__(self, root: Path, pods: int, rate: float, rotate_bytes: int, keep: int) -> None:
        super().__init__(daemon=True, name="writer")
        self.pods = [PodLog(root, "soak", f"writer-{i:02d}", f"c{i:02d}", uid=f"uid-{i:02d}")
                     for i in range(pods)]
        self.written = [0] * pods
        self.rotations = 0
        self._rate, self._rotate_bytes, self._keep = rate, rotate_bytes, keep
        self._last_ts = 0
        self.stop = threading.Event()

    def run(self) -> None:
        tick = 0.05
        per_tick = max(1, int(self._rate * tick / LINE_BYTES / len(self.pods)))
        next_at = time.monotonic()
        while not self.stop.is_set():
            for i, pod in enumerate(self.pods):
                body = []
                for _ in range(per_tick):
                    self._last_ts = max(self._last_ts + 1, time.time_ns())
                    head = f"p{i:02d} {self.written[i]:09d} "
                    body.append(f"{cri_ts(self._last_ts)} stdout F {head}"
                                f"{'x' * (LINE_BYTES - len(head))}\n")
                    self.written[i] += 1
                pod.raw("".join(body).encode())
                if pod.file.stat().st_size >= self._rotate_bytes:
                    self._rotate(pod)
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _rotate(self, pod: PodLog) -> None:
        pod.rotate()
        pod.compress_rotated()
        for old in pod.rotated()[:-self._keep]:
            old.unlink()
        self.rotations += 1


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mb-per-s", type=float, default=2.0, help="write rate, all pods")
    parser.add_argument("--pods", type=int, default=8)
    parser.add_argument("--rotate-mib", type=float, default=5.0,
                        help="rotate each file at this size (kubelet default: 10)")
    parser.add_argument("--outage-every", type=float, default=90.0, help="seconds")
    parser.add_argument("--outage-for", type=float, default=20.0, help="seconds")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--out", default="soak-result.json")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shipper-soak-"))
    receiver = LokiReceiver()
    tally = Tally()
    receiver._entries = tally  # count, do not keep
    receiver.start()
    port = free_port()
    config = write_config(root, receiver.url, port,
                          inputs={"rescan_interval": "10s"},
                          positions={"write_interval": "1s"},
                          loki={"min_backoff": "500ms", "max_backoff": "5s", "timeout": "10s"},
                          batch={"size": 100, "timeout": "1s"})
    log = open(root / "agent.log", "wb")  # noqa: SIM115  (lives as long as the agent)
    agent = start_subprocess(config, stderr=log)
    writer = Writer(root, args.pods, args.mb_per_s * 1e6, int(args.rotate_mib * 2**20), 4)
    started = time.monotonic()
    writer.start()
    outages, peak_pending, rss_samples = 0, 0.0, []
    end = started + args.minutes * 60
    next_outage = started + args.outage_every
    try:
        while time.monotonic() < end:
            time.sleep(1)
            if time.monotonic() >= next_outage:
                outages += 1
                if outages % 2:
                    receiver.refuse()  # Loki's pod is gone: connection refused
                else:
                    receiver.fail(503)  # Loki is up but unhealthy
                time.sleep(args.outage_for)
                if outages % 2:
                    receiver.start()
                receiver.accept()
                next_outage = time.monotonic() + args.outage_every
            metrics = scrape(port)
            peak_pending = max(peak_pending, metrics.get("shipper_pending_bytes", 0.0))
            rss_samples.append(metrics.get("process_resident_memory_bytes", 0.0))
        writer.stop.set()
        writer.join()
        total = sum(writer.written)
        drain_until = time.monotonic() + args.drain_timeout
        while tally.audit(writer.written)[1] and time.monotonic() < drain_until:
            time.sleep(2)
        cpu = scrape(port).get("process_cpu_seconds_total", 0.0)
        hwm = vm_hwm_kib(agent.pid)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            code = agent.wait()
        receiver.stop()
    seen, missing, dups = tally.audit(writer.written)
    elapsed = time.monotonic() - started
    result = {
        "minutes": args.minutes, "pods": args.pods, "write_mb_per_s": args.mb_per_s,
        "line_bytes": LINE_BYTES, "outages": outages, "outage_seconds": args.outage_for,
        "rotations": writer.rotations,
        "lines_written": total, "lines_delivered": tally.delivered(),
        "distinct_delivered": seen, "missing": missing, "duplicates": dups,
        "peak_rss_mib": round(hwm / 1024, 1),
        "max_rss_sampled_mib": round(max(rss_samples, default=0) / 2**20, 1),
        "peak_pending_mib": round(peak_pending / 2**20, 1),
        "max_lag_seconds": round(tally.max_lag_ns / 1e9, 2),
        "agent_cpu_seconds": round(cpu, 1), "agent_cpu_share": round(cpu / elapsed, 3),
        "agent_exit_code": code, "agent_log": str(root / "agent.log"),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if missing == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
