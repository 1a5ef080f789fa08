"""Real Collector configs (the seed's, the Helm chart's logs preset, and configs from the
Collector's own documentation; each file names its source) converted to golden outputs: the
shipper config with its comments, and the report of what did not map.

After a deliberate change, regenerate them and read the diff:
    cd tests/data/otelcol && for f in $(ls *.yaml | grep -v expected); do
      python -m shipper convert otelcol $f > ${f%.yaml}.expected.yaml 2> ${f%.yaml}.expected.report
    done
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipper.__main__ import main
from shipper.config import parse_config
from shipper.pipeline.config import read_pipeline

DATA = Path(__file__).parent / "data/otelcol"
SOURCES = sorted(p.name for p in DATA.glob("*.yaml") if ".expected." not in p.name)


@pytest.mark.parametrize("name", SOURCES)
def test_conversion_matches_its_golden_output(name: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(DATA)
    code = main(["convert", "otelcol", name])
    out, err = capsys.readouterr()
    stem = name.removesuffix(".yaml")
    assert out == (DATA / f"{stem}.expected.yaml").read_text()
    assert err == (DATA / f"{stem}.expected.report").read_text()
    assert code == (1 if "\nnot mapped:\n" in err else 0)


@pytest.mark.parametrize("name", SOURCES)
def test_golden_outputs_are_configs_shipper_loads(name: str) -> None:
    raw = yaml.safe_load((DATA / f"{name.removesuffix('.yaml')}.expected.yaml").read_text())
    raw = raw or {}
    read_pipeline(raw.pop("pipeline", None))
    parse_config(yaml.safe_dump(raw), env={})


def test_the_sources_are_the_seed_the_helm_preset_and_documented_configs() -> None:
    assert {"seed.yaml", "helm-logs-preset.yaml"} < set(SOURCES)
    heads = {n: "".join((DATA / n).read_text().split("\n")[:5]) for n in SOURCES}
    documented = [n for n, head in heads.items() if "https://" in head]
    assert len(documented) >= 4  # the preset and at least three from the Collector's docs


def test_the_migration_guide_shows_the_seed_as_it_converts() -> None:
    guide = (Path(__file__).parents[1] / "docs/migrating-from-otel.md").read_text()
    section = guide.split("## The seed's config, converted", 1)[1]
    shown = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert shown == (DATA / "seed.expected.yaml").read_text()
