"""Bad-line warnings: one at the start of a streak, then at most once a minute per file."""

from __future__ import annotations

import logging

import pytest

from shipper.badlines import BadLineWarnings
from tests.support.clock import Clock

PATH = "/var/log/containers/app.log"


def warnings(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [{k: getattr(r, k) for k in ("path", "unparsable", "invalid_utf8", "truncated",
                                         "sample")}
            for r in caplog.records if r.name == "shipper.badlines"]


def test_a_streak_is_reported_at_once_then_at_most_once_a_minute_with_counts_since(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    report = BadLineWarnings(PATH, clock)
    with caplog.at_level(logging.WARNING):
        report.count(0, 0, 0, b"")  # good lines only: nothing to say
        assert warnings(caplog) == []
        report.count(3, 0, 0, b"\x00\xffjunk")
        assert warnings(caplog) == [{"path": PATH, "unparsable": 3, "invalid_utf8": 0,
                                     "truncated": 0, "sample": "b'\\x00\\xffjunk'"}]
        for _ in range(59):  # the streak goes on: held back for a minute
            clock.now += 1
            report.count(1, 1, 0, b"more junk")
        report.count(0, 0, 2, b"L" * 80)
        assert len(warnings(caplog)) == 1
        clock.now += 1  # a minute since the warning: the next chunk reports what came since
        report.count(0, 0, 0, b"L" * 80)
        assert warnings(caplog)[1:] == [{"path": PATH, "unparsable": 59, "invalid_utf8": 59,
                                         "truncated": 2, "sample": repr(b"L" * 80)}]
        clock.now += 3600  # quiet for an hour: nothing more
        report.count(0, 0, 0, b"L" * 80)
        assert len(warnings(caplog)) == 2
        report.count(0, 1, 0, b"\xc3(")  # a new streak is reported at once
        assert warnings(caplog)[2]["invalid_utf8"] == 1
