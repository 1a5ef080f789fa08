"""Fault-injection helpers: account for every numbered line, read the agent's metrics and
positions from outside, and run the agent subprocess without root's file-permission bypass."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shipper.model import FileId
from tests.support.agent import config_dict
from tests.support.loki_receiver import ReceivedEntry

_CRI_MESSAGE = re.compile(rb"^\S+ (?:stdout|stderr) [PF] (.*)$")


@dataclass(frozen=True)
class Audit:
    missing: list[str]
    duplicates: int  # deliveries beyond the first, over all lines
    unexpected: list[str]


def audit(entries: Sequence[ReceivedEntry], expected: Iterable[str]) -> Audit:
    counts = collections.Counter(e.line for e in entries)
    wanted = list(expected)
    wanted_set = set(wanted)
    return Audit(missing=[line for line in wanted if counts[line] == 0],
                 duplicates=sum(n - 1 for n in counts.values()),
                 unexpected=[line for line in counts if line not in wanted_set])


def assert_none_missing(entries: Sequence[ReceivedEntry], expected: Iterable[str],
                        scenario: str) -> int:
    """Every expected line arrived (and nothing else did); returns and prints the duplicates."""
    result = audit(entries, expected)
    assert not result.missing, (f"{scenario}: {len(result.missing)} lines missing, "
                                f"e.g. {result.missing[:3]}")
    assert not result.unexpected, f"{scenario}: unexpected lines {result.unexpected[:3]}"
    print(f"[{scenario}] delivered={len(entries)} duplicates={result.duplicates}")
    return result.duplicates


def assert_stream_order(entries: Sequence[ReceivedEntry]) -> None:
    """Per Loki stream, the first delivery of each entry comes in timestamp order: a retried
    batch may repeat entries, but never reorders the ones delivered for the first time."""
    seen: set[tuple[str, int, str]] = set()
    last: dict[str, int] = {}
    for e in entries:
        stream = json.dumps(e.labels, sort_keys=True)
        key = (stream, e.timestamp_ns, e.line)
        if key in seen:
            continue
        seen.add(key)
        assert e.timestamp_ns >= last.get(stream, 0), f"out of order in {stream}: {e.line}"
        last[stream] = e.timestamp_ns


# -- positions, seen from outside ---------------------------------------------------------------

def line_ends(paths: Iterable[Path]) -> dict[str, tuple[FileId, int]]:
    """Each CRI line's message -> (its file, the offset just past it)."""
    ends: dict[str, tuple[FileId, int]] = {}
    for path in paths:
        st = os.stat(path)
        file, offset = FileId(st.st_dev, st.st_ino), 0
        for raw in path.read_bytes().splitlines(keepends=True):
            offset += len(raw)
            if m := _CRI_MESSAGE.match(raw.rstrip(b"\n")):
                ends[m.group(1).decode()] = (file, offset)
    return ends


def saved_positions(path: Path) -> dict[FileId, int]:
    """The offsets a restart resumes from (none if nothing was written yet)."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {FileId(f["dev"], f["ino"]): f["offset"] for f in raw["files"]}


def beyond_saved(received: Iterable[str], ends: dict[str, tuple[FileId, int]],
                 saved: dict[FileId, int]) -> int:
    """Delivered lines the saved positions do not cover: a restart sends them again. This is
    what the issue allows as duplicates (in flight, or acknowledged since the last write)."""
    count = 0
    for line in received:
        file, end = ends[line]
        if end > saved.get(file, 0):
            count += 1
    return count


# -- the agent from outside -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, url: str, port: int = 0,
                 pipeline: list[dict[str, Any]] | None = None,
                 **sections: dict[str, Any]) -> Path:
    raw = config_dict(root, url, pipeline, **sections)
    raw["server"]["listen"] = f"127.0.0.1:{port}"
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def scrape(port: int) -> dict[str, float]:
    """/metrics as {'name{label="v"}': value}."""
    _, text = get(port, "/metrics")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


# -- without root's permission bypass ---------------------------------------------------------

NOBODY = 65534


def unprivileged_prefix() -> tuple[list[str], int]:
    """A command prefix that runs the agent so that file permission bits apply to it, and the
    uid it then runs as: 65534 when that user can run this interpreter, else root without
    CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_NET_BIND_SERVICE (the interpreter may live
    under a 0700 /root). A file owned by the other of (0, NOBODY) with mode 0600 is then
    unreadable to the agent, and ports below 1024 are denied to it. Skips if neither works."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users or drop capabilities")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the agent unprivileged")
    probe = [sys.executable, "-c", "import shipper"]
    candidates = (
        (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], NOBODY),
        (["setpriv", "--bounding-set=-dac_override,-dac_read_search,-net_bind_service"], 0),
    )
    for prefix, uid in candidates:
        if subprocess.run([*prefix, *probe], capture_output=True, check=False).returncode == 0:
            return prefix, uid
    pytest.skip("cannot run the agent without root's permission bypass here")
