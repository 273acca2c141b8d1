"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

import pytest
from llama_server import llama_server, tool_server  # noqa: F401  (session fixtures: one server each)
from support import BenchRun

pytest_plugins = ["pytester"]


@pytest.fixture
def bench(pytester: pytest.Pytester) -> BenchRun:
    return BenchRun(pytester)
