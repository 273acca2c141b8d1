"""What the Vue suite's tests share: the skip marker for a machine without the Node tools."""

from __future__ import annotations

import os

import pytest

from harness.suites.vue_project import NodeToolsMissing, VueProject


def _missing() -> str | None:
    try:
        VueProject().check_installed()
    except NodeToolsMissing as exc:
        return str(exc)
    return None


# Skipped on a developer's machine without `npm ci --prefix fixtures/vue/project`; under CI, which
# installs them (.ci/run), a missing tool fails the tests instead of hiding them.
requires_vue_tools = pytest.mark.skipif(_missing() is not None and not os.environ.get("CI"),
                                        reason=f"{_missing()}")
