"""Faults: hostile file contents: binary junk, bad text, a partial line that never ends."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from pathlib import Path

import pytest

from shipper.model import FileId
from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import free_port, saved_positions, scrape, write_config
from tests.support.kubelet import PodLog, cri_ts
from tests.support.loki_receiver import LokiReceiver

PARTS = 100_000
MAX_LINE = 16 * 1024


def test_binary_junk_and_bad_text_are_shipped_counted_and_warned_about_once_per_streak(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    junk = PodLog(tmp_path, "bad", "junk-0", "app")
    text = PodLog(tmp_path, "bad", "text-0", "app")
    good = PodLog(tmp_path, "bad", "good-0", "app")
    rng = random.Random(10)
    garbage = [b"\x7fELF" + bytes(rng.randrange(256) for _ in range(200)).replace(b"\n", b"")
               for _ in range(300)]
    junk.raw(b"".join(line + b"\n" for line in garbage))
    text.raw(f"{cri_ts(text.next_ts)} stdout F caf".encode() + b"\xe9 au lait\n")
    text.lines("x" * 2000, 1)  # past max_line_bytes

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, inputs={"max_line_bytes": 1000})
        async with running(config) as agent:
            await until(lambda: len(receiver.entries) >= 302)
            more = [b"more junk \x00\x01 %d" % i for i in range(100)]
            junk.raw(b"".join(line + b"\n" for line in more))  # the same streak, within a minute
            good.lines("fine", 100)
            await until(lambda: len(receiver.entries) >= 502)
            await asyncio.sleep(0.3)
            assert agent.metrics.lines_unparsable._value.get() == 400

    with LokiReceiver() as receiver, caplog.at_level(logging.WARNING):
        asyncio.run(scenario(receiver))
    warned = [vars(r) for r in caplog.records if r.getMessage().startswith("bad lines in")]
    counts = {w["path"]: (w["unparsable"], w["invalid_utf8"], w["truncated"]) for w in warned}
    # one warning per file (the second junk write is within the minute), none for the good one;
    # binary junk is both unparsable and invalid UTF-8
    assert len(warned) == 2
    assert counts == {str(junk.link): (300, 300, 0), str(text.link): (0, 1, 1)}
    sample = next(w["sample"] for w in warned if w["path"] == str(junk.link))
    assert sample == repr(garbage[-1][:80])  # the last bad line of what was read



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
