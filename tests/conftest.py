"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import pytest
from llama_server import llama_server  # noqa: F401  (a session fixture: one server for all tests)
from support import BenchRun

pytest_plugins = ["pytester"]


@pytest.fixture
def bench(pytester: pytest.Pytester) -> BenchRun:
    return BenchRun(pytester)
