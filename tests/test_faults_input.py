"""Faults: hostile file contents: a partial line that never ends."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shipper.model import FileId
from tests.support.agent import start_subprocess, terminate
from tests.support.faults import free_port, saved_positions, scrape, write_config
from tests.support.kubelet import PodLog, cri_ts
from tests.support.loki_receiver import LokiReceiver

PARTS = 100_000
MAX_LINE = 16 * 1024


def test_a_partial_line_that_never_ends_does_not_pin_its_file(tmp_path: Path) -> None:
    """100,000 P lines and no F: the head is shipped truncated and the position moves past it,
    so a restart does not send it (or anything before it) again; the lines after it arrive."""
    pod = PodLog(tmp_path, "partial", "app-0", "app")
    before = pod.lines("before", 10)
    ts = cri_ts(pod.next_ts + 1_000)
    parts = [f"part-{i:06d} " for i in range(PARTS)]
    pod.raw("".join(f"{ts} stdout P {part}\n" for part in parts).encode())
    head = "".join(parts)[:MAX_LINE]
    in_head = -(-(MAX_LINE + 1) // len(parts[0]))  # parts joined until past the limit
    st = os.stat(pod.file)
    file, size = FileId(st.st_dev, st.st_ino), st.st_size
    positions = tmp_path / "positions.json"
    port = free_port()
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url, port, inputs={"max_line_bytes": MAX_LINE})
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: head in {x.line for x in e}, timeout=20), \
                "the head of the unfinished line was not shipped"
            deadline = time.monotonic() + 10
            while saved_positions(positions).get(file) != size:
                assert time.monotonic() < deadline, saved_positions(positions)
                time.sleep(0.05)
            metrics = scrape(port)
        finally:
            code, err = terminate(agent)
        assert code == 0, err
        assert metrics["shipper_lines_truncated_total"] == 1
        assert metrics["shipper_partial_bytes_discarded_total"] == sum(
            len(part) for part in parts[in_head:])
        # Restart; meanwhile the line ends and ordinary lines follow it.
        pod.raw(f"{cri_ts(pod.next_ts + 2_000)} stdout F the end\n".encode())
        pod.next_ts += 2_000
        after = pod.lines("after", 50)
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: len(e) >= len(before) + 1 + 1 + len(after), 15)
            time.sleep(0.3)  # anything sent again would arrive now
        finally:
            code, err = terminate(agent)
        assert code == 0, err
        lines = [e.line for e in receiver.entries]
    # Nothing from the start again; the F part, read after the restart without the head it
    # belonged to, is a line of its own (README: not promised).
    assert sorted(lines) == sorted([*before, head, "the end", *after])
