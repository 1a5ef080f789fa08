"""The per-line modules are compiled by mypyc at install (setup.py): check that they were, and
that compiled and pure-Python code give the same results."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

import shipper.loki.encode
import shipper.parse
from shipper.model import Stream

SOURCE = Path(__file__).resolve().parent.parent / "shipper"


def pure(name: str, path: Path) -> ModuleType:
    """The module run from its .py source, bypassing the compiled extension."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


PURE_PARSE = pure("pure_parse", SOURCE / "parse.py")
PURE_ENCODE = pure("pure_encode", SOURCE / "loki" / "encode.py")


def test_the_install_compiled_the_hot_modules() -> None:
    # setup.py falls back to Python without a compiler; the build machines have one, so a
    # silent fallback here would be a broken build, not a choice.
    for module in (shipper.parse, shipper.loki.encode):
        assert str(module.__file__).endswith(".so"), module.__file__


OUT = Stream('{s="out"}', (("s", "out"),))
ERR = Stream('{s="err"}', (("s", "err"),))
# The CRI fast path reads "<seconds>.<1-9 digits>Z std{out,err} {F,P} <message>" in place:
# near misses of each of its fields, and of the separators, must go the way the slow path goes.
cri = st.tuples(st.sampled_from(["2024-02-29T23:59:59", "2024-01-01T00:00:00",
                                 "2023-02-29T00:00:00", "2024-01-01T24:00:00"]),
                st.sampled_from(["", ".", ".5", ".123456789", ".1234567890", ".12a"]),
                st.sampled_from(["Z", "+02:00", "z", ""]), st.sampled_from([" ", "  ", "\t"]),
                st.sampled_from(["stdout", "stderr", "bogus", "stdoux", "stdo", "stderrr"]),
                st.sampled_from(["F", "P", "X", "F:x", "P:", "", "FF"]),
                st.sampled_from([" ", "", "  "]),
                st.text(max_size=40).map(lambda t: t.replace("\n", " "))).map(
    lambda p: f"{p[0]}{p[1]}{p[2]}{p[3]}{p[4]} {p[5]}{p[6]}{p[7]}".encode())
docker = st.tuples(st.text(max_size=30), st.booleans(),
                   st.sampled_from(["stdout", "stderr", "bogus"]),
                   st.sampled_from(["2024-02-29T23:59:59.5Z", "2024-01-01T00:00:00Z",
                                    "2024-01-01T00:00:00.123456789+02:00", "bad"])).map(
    lambda p: json.dumps({"log": p[0] + ("\n" if p[1] else ""), "stream": p[2],
                          "time": p[3]}).encode())
junk = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b""))
lines = st.one_of(st.lists(st.one_of(junk, cri), max_size=40),
                  st.lists(st.one_of(junk, docker), max_size=40))


@settings(max_examples=300, deadline=None)
@given(lines=lines, cut=st.integers(0, 40), cap=st.sampled_from([16, 1024]))
def test_compiled_and_pure_parsers_agree(lines: list[bytes], cut: int, cap: int) -> None:
    data = b"".join(line + b"\n" for line in lines)
    results = []
    for module in (shipper.parse, PURE_PARSE):
        parser = module.FileParser(cap, OUT, ERR, now_ns=lambda: 7)
        first = b"".join(line + b"\n" for line in lines[:cut])
        a = parser.parse(first, 0)
        b = parser.parse(data[len(first):], len(first))
        parsed = parser.parsed_bytes
        results.append((a, b, parsed, parser.flush(), dataclasses.astuple(parser.counts),
                        parser.bad_sample))
    assert results[0] == results[1]


@settings(max_examples=50, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(0, 2**63 - 1), st.binary(max_size=20_000)),
                        max_size=30))
def test_compiled_and_pure_encoders_agree(entries: list[tuple[int, bytes]]) -> None:
    stream = Stream('{app="a"}', (("app", "a"),), (("pod", "p-0"), ("stream", "stdout")))
    batch = {stream.labels: [(ts, line, stream) for ts, line in entries]}
    assert (shipper.loki.encode.encode_push_request(batch)
            == PURE_ENCODE.encode_push_request(batch))
