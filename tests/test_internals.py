"""The private pytest and pytest-xdist parts the harness relies on (harness/run/internals.py), checked
against the installed versions: a version that changes one fails here, loudly and by name, instead
of quietly selecting the wrong models or batching the wrong cases."""

from __future__ import annotations

import ast
import inspect

import pytest
from support import PROJECT

from harness.run import internals

PYTEST = f"pytest {pytest.__version__}"


def test_expressions_read_as_pytest_reads_them() -> None:
    try:
        evaluate, names = internals.compile_expression("gemma and not (tier_large or astronomy)")
    except internals.InternalsChanged as exc:
        pytest.fail(f"{PYTEST} changed _pytest.mark.expression: {exc}")
    assert names == {"gemma", "tier_large", "astronomy"}, \
        f"{PYTEST}: Expression identifiers changed (selection.py reads model names from them)"
    assert evaluate(lambda word: word == "gemma") is True
    assert evaluate(lambda word: word in ("gemma", "astronomy")) is False
    with pytest.raises(SyntaxError):
        internals.compile_expression("gemma and (")


def test_xdist_worker_queue_is_where_upcoming_reads_it() -> None:
    remote = pytest.importorskip("xdist.remote")
    source = inspect.getsource(remote.WorkerInteractor)
    for part in ("self.torun", "self.nextitem_index", "torun.lock()"):
        assert part in source, (f"pytest-xdist {remote.__name__}: WorkerInteractor no longer has {part!r}; "
                                "harness/run/internals.py worker_queue reads the cases a worker runs next from it")


def test_no_other_module_imports_private_pytest_or_xdist_parts() -> None:
    found = []
    for path in (PROJECT / "harness").rglob("*.py"):
        if path.name == "internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(PROJECT)}: {n}" for n in names if n.startswith(("_pytest", "xdist"))]
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(PROJECT)}: {w}" for w in ("torun", "nextitem_index") if w in text]
    assert found == []
