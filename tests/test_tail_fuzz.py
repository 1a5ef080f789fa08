"""Random bytes through the whole read path (tail, split, parse, enrich, batch, push): nothing
raises, and every line written is shipped or counted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.agent import Agent
from tests.support.agent import make_config
from tests.support.kubelet import PodLog, cri_ts

# A raw line that can never parse as CRI or Docker (it starts with "x"), of any bytes at all.
raw_lines = st.binary(max_size=300).map(lambda b: b"x" + b.replace(b"\n", b""))
cri_lines = st.tuples(st.integers(0, 10**18), st.sampled_from(["stdout", "stderr"]),
                      st.text(max_size=200).map(lambda t: t.replace("\n", " "))).map(
    lambda t: f"{cri_ts(t[0])} {t[1]} F {t[2]}".encode())
huge_lines = st.integers(5_000, 20_000).map(lambda n: b"x" * n)  # past the read cap: skipped
lines_strategy = st.lists(st.one_of(raw_lines, cri_lines, huge_lines, st.just(b"")), max_size=60)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=40, deadline=None)
@given(lines=lines_strategy, read_chunk=st.sampled_from([16, 100, 4096, 262144]))
def test_random_input_is_shipped_or_counted_and_nothing_raises(
        lines: list[bytes], read_chunk: int) -> None:
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            pod = PodLog(root, "fuzz", "random-0", "app")
            pod.raw(b"".join(line + b"\n" for line in lines))
            config = make_config(root, "", inputs={"read_chunk_bytes": read_chunk,
                                                   "max_line_bytes": 1000},
                                 server={"listen": ""})
            out = io.StringIO()
            agent = Agent(config, out=out, once=True)
            asyncio.run(agent.run(asyncio.Event()))
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    # JSON lines end in "\n" only: str.splitlines() would also split at a U+0085 in a value
    shipped = [json.loads(line) for line in out.getvalue().split("\n") if line]
    blank = sum(1 for line in lines if not line)
    assert len(shipped) == len(lines) - blank  # one entry per line: none lost, none invented
    assert agent.metrics.read_lines._value.get() == len(lines)
    for entry in shipped:
        assert len(entry["line"].encode()) <= 1000
