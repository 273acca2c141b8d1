"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import pytest
from support import BenchRun

pytest_plugins = ["pytester"]


@pytest.fixture
def bench(pytester: pytest.Pytester) -> BenchRun:
    return BenchRun(pytester)
