"""The Pulumi program type-checks and its mocked unit tests pass (`npm ci && npm test`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PULUMI = Path(__file__).resolve().parent.parent / "deploy" / "pulumi"


def test_pulumi_program_typechecks_and_passes_its_tests() -> None:
    npm = shutil.which("npm")
    assert npm is not None, "Node.js and npm are part of the build machine"
    for step in (["ci", "--no-audit", "--no-fund"], ["test"]):
        result = subprocess.run([npm, *step], cwd=PULUMI, capture_output=True, text=True,
                                timeout=480)
        output = result.stdout[-4000:] + result.stderr[-4000:]
        assert result.returncode == 0, f"npm {step[0]} failed:\n{output}"
