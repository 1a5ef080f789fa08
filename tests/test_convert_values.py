"""Go-written values in shipper's forms: durations, sizes, RE2 regexes and replacements, and
the Collector's timestamp layouts, each checked by parsing what the Collector's docs parse."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shipper.config import parse_config
from shipper.convert.report import Unsupported
from shipper.convert.timefmt import timestamp_format
from shipper.convert.units import duration, go_regex, go_replacement, seconds, size


@pytest.mark.parametrize(("go", "secs", "written"), [
    ("10s", 10.0, "10s"), ("500ms", 0.5, "500ms"), ("1m30s", 90.0, "90s"), ("5m", 300.0, "5m"),
    ("1h", 3600.0, "1h"), ("1.5s", 1.5, "1.5s"), (10_000_000_000, 10.0, "10s")])
def test_go_durations_are_written_as_shipper_reads_them(go: object, secs: float,
                                                        written: str) -> None:
    assert seconds(go, "x") == secs
    assert duration(secs) == written
    assert parse_config(f"batch: {{timeout: {written}}}", env={}).batch.timeout == secs


@pytest.mark.parametrize(("go", "count"), [
    ("1MiB", 1 << 20), ("1mib", 1 << 20), ("100kb", 100_000), ("1KiB", 1024), (102400, 102400),
    ("1.5MiB", 3 << 19)])
def test_sizes_read_the_collector_way(go: object, count: int) -> None:
    assert size(go, "x") == count


@pytest.mark.parametrize("bad", ["soon", "10", "", True, [1]])
def test_a_bad_duration_names_its_path(bad: object) -> None:
    with pytest.raises(Unsupported, match=r"^a\.b: expected a duration"):
        seconds(bad, "a.b")


@pytest.mark.parametrize(("go", "python", "text", "groups"), [
    (r"^(?<host>[^,]+), (?P<type>\w+)\z", r"^(?P<host>[^,]+), (?P<type>\w+)\Z", "h1, HTTP",
     {"host": "h1", "type": "HTTP"}),
    (r"^[[:digit:]]+ (?P<w>[[:alpha:]]+)$", r"^[0-9]+ (?P<w>[a-zA-Z]+)$", "42 abc", {"w": "abc"}),
    (r"\Q1.5*\E(?P<x>.)", r"1\.5\*(?P<x>.)", "1.5*z", {"x": "z"}),
])
def test_re2_spellings_become_pythons(go: str, python: str, text: str,
                                      groups: dict[str, str]) -> None:
    assert go_regex(go, "x") == python
    m = re.search(python, text)
    assert m is not None and m.groupdict() == groups


@pytest.mark.parametrize("go", [r"\pL+", r"(?U)a+", r"\p{Greek}"])
def test_re2_constructs_python_lacks_are_reported(go: str) -> None:
    with pytest.raises(Unsupported, match="no Python equivalent"):
        go_regex(go, "x")


def test_go_replacements_become_python_templates() -> None:
    template = go_replacement(r"$1-${name}-$$-\d")
    assert template == r"\g<1>-\g<name>-$-\\d"
    assert re.sub(r"(?P<name>a)(b)", template.replace(r"\g<1>", r"\g<2>"), "ab") == r"b-a-$-\d"


# Layouts from the Collector's docs (pkg/stanza/docs/types/timestamp.md and the Kubernetes
# examples), each with a value it parses and the instant it means.
@pytest.mark.parametrize(("layout_type", "layout", "text", "instant"), [
    ("strptime", "%Y-%m-%d", "2020-01-31", datetime(2020, 1, 31, tzinfo=UTC)),
    ("strptime", "%Y-%m-%d %H:%M:%S", "2023-06-19 05:20:50",
     datetime(2023, 6, 19, 5, 20, 50, tzinfo=UTC)),
    ("strptime", "%Y-%m-%d %H:%M:%S,%L %z", "2022-01-02 07:24:56,123 -0700",
     datetime(2022, 1, 2, 14, 24, 56, 123000, tzinfo=UTC)),
    ("strptime", "%d/%b/%Y:%H:%M:%S %z", "10/Oct/2000:13:55:36 -0700",
     datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
    ("gotime", "02/Jan/2006:15:04:05 -0700", "10/Oct/2000:13:55:36 -0700",
     datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
    ("gotime", "Jan 2 15:04:05 2006", "Jun 5 13:50:27 2020",
     datetime(2020, 6, 5, 13, 50, 27, tzinfo=UTC)),
    ("strptime", "%a %b %e %H:%M:%S %Y", "Fri Jun  5 13:50:27 2020",
     datetime(2020, 6, 5, 13, 50, 27, tzinfo=UTC)),
    ("gotime", "2006-01-02 15:04:05.000", "2024-03-30 08:31:20.545",
     datetime(2024, 3, 30, 8, 31, 20, 545000, tzinfo=UTC)),
])
def test_layouts_parse_what_the_collectors_docs_parse(layout_type: str, layout: str, text: str,
                                                      instant: datetime) -> None:
    fmt = timestamp_format(layout_type, layout, "x")
    parsed = datetime.strptime(text, fmt)
    assert (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) == instant


@pytest.mark.parametrize(("layout_type", "layout"), [
    ("gotime", "2006-01-02T15:04:05.999999999Z07:00"),  # Go's RFC3339Nano (CRI-O)
    ("gotime", "2006-01-02T15:04:05.000000000-07:00"),
    ("strptime", "%Y-%m-%dT%H:%M:%S.%LZ"),  # Docker's and containerd's, in the Collector docs
    ("strptime", "%Y-%m-%dT%H:%M:%S.%sZ"),
    ("strptime", "%FT%T%j"),
])
def test_rfc3339_shapes_read_as_rfc3339_to_the_nanosecond(layout_type: str,
                                                          layout: str) -> None:
    assert timestamp_format(layout_type, layout, "x") == "rfc3339"


@pytest.mark.parametrize(("layout", "fmt"), [
    ("s", "unix"), ("ms", "unix_ms"), ("us", "unix_us"), ("ns", "unix_ns"), ("s.ms", "unix")])
def test_epoch_layouts_become_unix_formats(layout: str, fmt: str) -> None:
    assert timestamp_format("epoch", layout, "x") == fmt


@pytest.mark.parametrize(("layout_type", "layout", "reason"), [
    ("strptime", "%Y %s", "nanoseconds"), ("gotime", "2006 15:04 -07", "±HH offset"),
    ("strptime", "%Q", "unknown strptime directive"), ("epoch", "minutes", "unknown epoch"),
    ("native", "x", "unknown layout_type")])
def test_layouts_python_cannot_read_are_reported(layout_type: str, layout: str,
                                                 reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        timestamp_format(layout_type, layout, "x")
