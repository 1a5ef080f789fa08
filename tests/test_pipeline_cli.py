"""The pipeline from the command line: check-config and run refuse a bad stage naming its key;
inspect shows each entry after each stage; the demo runs a pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.agent import config_dict

BAD = [
    ({"multiline": {"first_line": "(unclosed"}},
     "config key 'pipeline[0].stages[0].first_line': invalid regex at position 0"),
    ({"multiline": {"preset": "cobol"}}, "config key 'pipeline[0].stages[0].preset': unknown"),
    ({"frobnicate": {}}, "config key 'pipeline[0].stages[0]': unknown stage 'frobnicate'"),
    ({"labels": {"fields": {"1st": "x"}}},
     "config key 'pipeline[0].stages[0].fields.1st': '1st' is not a label name Loki accepts"),
]


def shipper(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "shipper", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize(("stage", "message"), BAD)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_bad_stage_fails_at_start_with_its_key_and_the_reason(
        tmp_path: Path, stage: dict[str, object], message: str, command: str) -> None:
    raw = config_dict(tmp_path, "", [{"stages": [{"drop": {"line": "x"}}, stage]}])
    raw["pipeline"][0]["stages"] = [stage]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = shipper(command, "--config", str(path))
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert message in err and "Traceback" not in err


def test_inspect_shows_each_stage_and_what_ships(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"pipeline": [{"match": {"namespace": "shop"}, "stages": [
        {"json": {"fields": {"level": "level"}}}, {"drop": {"level": ["debug"]}}]}]}))
    sample = (b'2024-05-01T12:00:00Z stdout F {"level":"debug","msg":"noise"}\n'
              b'2024-05-01T12:00:01Z stdout F {"level":"warn","msg":"disk"}\n')
    done = shipper("inspect", "--config", str(config), "--namespace", "shop", "--pod", "api-0",
                   "--label", "team=a", "-", stdin=sample)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "1. pipeline[0].stages[0] json" in out and "2. pipeline[0].stages[1] drop" in out
    assert "-- after 2. pipeline[0].stages[1] drop: 1 entries, 1 dropped" in out
    shipped = [json.loads(line) for line in out.split("== shipped (1):\n")[1].splitlines()]
    assert [(e["line"], e["structured_metadata"]["level"]) for e in shipped] == [
        ('{"level":"warn","msg":"disk"}', "warn")]


def test_inspect_applies_the_pods_annotations() -> None:
    sample = b"a\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError: x\n"
    done = shipper("inspect", "--annotation", "shipper.io/multiline=python",
                   "--annotation", "shipper.io/tenant=team-a", "-", stdin=sample)
    shipped = [json.loads(line) for line in
               done.stdout.decode().split("== shipped (2):\n")[1].splitlines()]
    assert [e["line"] for e in shipped] == ["a", sample.decode()[2:-1]]
    assert {e["tenant"] for e in shipped} == {"team-a"}


def test_the_demo_runs_its_pipeline() -> None:
    done = shipper("demo")
    assert done.returncode == 0, done.stderr.decode()
    entries = [json.loads(line) for line in done.stdout.decode().splitlines()]
    lines = [e["line"] for e in entries]
    java = [line for line in lines if "java.lang.IllegalStateException" in line]
    python = [line for line in lines if "Traceback" in line]
    assert len(java) == 1 and java[0].count("\n") > 10  # the whole trace, one entry
    assert len(python) == 1 and python[0].endswith("RuntimeError: order 42 failed")
    assert not any('"level":"debug"' in line for line in lines)  # dropped by level
    assert not any("ann@example.com" in line for line in lines)  # redacted
    levels = {e["structured_metadata"].get("detected_level") for e in entries}
    assert {"info", "warn", "error"} <= levels
