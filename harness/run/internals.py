"""The only place the harness reaches into pytest's and pytest-xdist's private parts.

Each use here has no public way to do the same, and tests/test_internals.py checks every one against
the installed versions, failing with the name of the part that changed:

- `-k` / `-m` expressions over model names (harness/run/selection.py): pytest's own grammar,
  `_pytest.mark.expression.Expression`, so the harness reads an expression exactly as pytest will.
  Its identifiers: `Expression.idents()` (pytest 9) or the compiled code's `$`-prefixed names (pytest 8).
- the cases an xdist worker will run next (harness/run/upcoming.py): the worker's `torun` queue and
  `nextitem_index` on xdist's WorkerInteractor, the plugin that receives the controller's items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


class InternalsChanged(RuntimeError):
    """A private part of pytest or pytest-xdist the harness relies on is not what it was."""


def compile_expression(expression: str) -> tuple[Callable[[Callable[[str], bool]], bool], frozenset[str]]:
    """(evaluate(matcher) -> bool, the identifiers) of a -k/-m expression, by pytest's own grammar.

    Raises SyntaxError for an expression pytest would reject too (pytest reports it itself)."""
    try:
        from _pytest.mark.expression import Expression
    except ImportError as exc:  # pragma: no cover - only on a pytest that moved it
        raise InternalsChanged(f"pytest {pytest.__version__} has no _pytest.mark.expression.Expression "
                               "(the -k/-m grammar harness/run/selection.py reads model names with)") from exc
    compiled = Expression.compile(expression)  # SyntaxError for a bad expression
    idents = getattr(compiled, "idents", None)  # pytest >= 9
    if callable(idents):
        names = frozenset(idents())
    else:  # pytest 8: the identifiers are the code's names, prefixed with "$"
        code = getattr(compiled, "_code", None)
        if code is None:
            raise InternalsChanged(f"pytest {pytest.__version__}: Expression has neither idents() nor _code")
        names = frozenset(n[1:] for n in code.co_names if n.startswith("$"))

    def evaluate(matcher: Callable[[str], bool]) -> bool:
        return bool(compiled.evaluate(lambda name, **_kwargs: matcher(name)))  # type: ignore[arg-type]

    return evaluate, names


def xdist_interactor(config: pytest.Config) -> Any | None:
    """pytest-xdist's WorkerInteractor in a worker process (the plugin holding `torun`), else None."""
    return next((p for p in config.pluginmanager.get_plugins()
                 if hasattr(p, "torun") and hasattr(p, "nextitem_index")), None)


def worker_queue(item: pytest.Item) -> list[pytest.Item] | None:
    """The items after `item` that this xdist worker has been given, or None off xdist."""
    if not hasattr(item.config, "workerinput"):
        return None
    interactor = xdist_interactor(item.config)
    if interactor is None:
        return []  # a worker of an xdist we do not know: batch nothing ahead
    items = item.session.items
    indices: list[Any] = [interactor.nextitem_index]
    with interactor.torun.lock() as queue:  # the worker's own channel thread appends to it
        indices += list(queue)
    return [items[i] for i in indices if isinstance(i, int) and 0 <= i < len(items)]
