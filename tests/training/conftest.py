"""Fixtures for the training tests: a tiny on-disk cohort and a config table for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_cohort import base_table, write_cohort


@pytest.fixture
def cohort_csv(tmp_path: Path) -> Path:
    return write_cohort(tmp_path / "cohort")


@pytest.fixture
def tiny_table(cohort_csv: Path, tmp_path: Path) -> dict[str, Any]:
    return base_table(cohort_csv, tmp_path / "cache")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train far faster on one thread than on two contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
