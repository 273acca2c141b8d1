"""Shared fixtures for the harness's own tests."""

from __future__ import annotations

# Extension modules load once per process. pytester restores sys.modules after each test that uses
# it, dropping what the test imported; a later import of such a module then fails ("cannot load
# module more than once per process"). Imported here, before any snapshot, they stay.
import numpy  # noqa: F401
import pytest
from llama_server import llama_server, tool_server  # noqa: F401  (session fixtures: one server each)
from support import BenchRun

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
except ImportError:  # the extraction extra is not installed: no plots, nothing to keep
    pass

pytest_plugins = ["pytester"]


@pytest.fixture
def bench(pytester: pytest.Pytester) -> BenchRun:
    return BenchRun(pytester)
