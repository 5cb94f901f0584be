"""Fixtures for the frequency tests (helpers live in freq_toy.py)."""

from __future__ import annotations

import pytest
from freq_toy import ToyNet, train_toy


@pytest.fixture(scope="session")
def toy_model() -> ToyNet:
    return train_toy(3)


@pytest.fixture(scope="session")
def toy_model_2d() -> ToyNet:
    return train_toy(2)
