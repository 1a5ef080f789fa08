"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A tmp dir another user can traverse (pytest's tmp_path is 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix="shipper-faults-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)
