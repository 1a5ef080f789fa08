"""A stand-in for kubelet and the container runtime: writes pod log files the way they do."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def cri_ts(ns: int) -> str:
    """RFC3339Nano in UTC, as containerd writes it (always 9 fraction digits)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    import time as _time

    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds)) + f".{frac:09d}Z"


@dataclass
class PodLog:
    """One container's log as kubelet lays it out: /var/log/pods/<ns>_<pod>_<uid>/<c>/0.log and
    the /var/log/containers/<pod>_<ns>_<c>-<id>.log link to it."""

    root: Path
    namespace: str
    pod: str
    container: str
    uid: str = ""  # default: one per namespace and pod name; pass it to make_pod(uid=...)
    docker: bool = False  # json-file format instead of CRI
    rotations: int = 0
    next_ts: int = 1_800_000_000_000_000_000  # ns; every line gets a distinct timestamp
    written: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.uid = self.uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.namespace}/{self.pod}"))
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.touch()
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if not self.link.is_symlink():
            os.symlink(self.file, self.link)

    @property
    def file(self) -> Path:
        return self.root / "var/log/pods" / f"{self.namespace}_{self.pod}_{self.uid}" / \
            self.container / "0.log"

    @property
    def link(self) -> Path:
        # A container id is new for each container, so a pod recreated under its name (new uid)
        # gets a link of its own beside the old one.
        cid = hashlib.sha256(
            f"{self.namespace}/{self.pod}/{self.uid}/{self.container}".encode()).hexdigest()
        name = f"{self.pod}_{self.namespace}_{self.container}-{cid}.log"
        return self.root / "var/log/containers" / name

    def _ts(self) -> int:
        self.next_ts += 1_000
        return self.next_ts

    def raw(self, data: bytes) -> None:
        with open(self.file, "ab") as fh:
            fh.write(data)

    def line(self, message: str, stream: str = "stdout") -> int:
        """Write one full line; returns its timestamp in ns."""
        ts = self._ts()
        if self.docker:
            record = {"log": message + "\n", "stream": stream, "time": cri_ts(ts)}
            self.raw(json.dumps(record).encode() + b"\n")
        else:
            self.raw(f"{cri_ts(ts)} {stream} F {message}\n".encode())
        self.written.append(message)
        return ts

    def partial(self, parts: list[str], stream: str = "stdout") -> int:
        """Write one logical line split by the runtime into P parts and a final F part."""
        first = self._ts()
        out = []
        for i, part in enumerate(parts):
            ts = first if i == 0 else self._ts()
            last = i == len(parts) - 1
            if self.docker:
                rec = {"log": part + ("\n" if last else ""), "stream": stream, "time": cri_ts(ts)}
                out.append(json.dumps(rec) + "\n")
            else:
                out.append(f"{cri_ts(ts)} {stream} {'F' if last else 'P'} {part}\n")
        self.raw("".join(out).encode())
        self.written.append("".join(parts))
        return first

    def lines(self, prefix: str, count: int, start: int = 0) -> list[str]:
        messages = [f"{prefix} {i:07d}" for i in range(start, start + count)]
        ts0 = self.next_ts
        body = []
        for i, message in enumerate(messages):
            ts = ts0 + (i + 1) * 1_000
            if self.docker:
                body.append(json.dumps({"log": message + "\n", "stream": "stdout",
                                        "time": cri_ts(ts)}) + "\n")
            else:
                body.append(f"{cri_ts(ts)} stdout F {message}\n")
        self.next_ts = ts0 + count * 1_000
        self.raw("".join(body).encode())
        self.written.extend(messages)
        return messages

    def rotate(self) -> Path:
        """kubelet's rotation: rename 0.log to 0.log.<stamp>, then a fresh 0.log."""
        self.rotations += 1
        rotated = self.file.with_name(f"0.log.20261127-0900{self.rotations:02d}")
        os.rename(self.file, rotated)
        self.file.touch()
        return rotated

    def rotated(self) -> list[Path]:
        """The rotated generations still on disk (plain or gzipped), oldest first."""
        return sorted(self.file.parent.glob("0.log.*"))

    def compress_rotated(self) -> None:
        """What kubelet does after a rotation: keep the newest rotated file plain, gzip the
        older ones and delete their plain copies (an open descriptor still reads them)."""
        plain = [p for p in self.rotated() if p.suffix != ".gz"]
        for path in plain[:-1]:
            with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()

    def truncate(self) -> None:
        os.truncate(self.file, 0)

    def delete(self) -> None:
        """The pod is gone: kubelet removes the link and the pod's log directory."""
        self.link.unlink()
        for f in self.file.parent.iterdir():
            f.unlink()
        self.file.parent.rmdir()
