"""Which cases this process will run next: the look-ahead of batched scoring.

After collection and -k/-m deselection, `session.items` is what a plain run will run, in order.
A pytest-xdist worker runs only what the controller sends it: its queue, read from xdist's private
parts in harness/run/internals.py (the one module that touches them). Cases skipped before they start (--resume's
answered cases, skip marks) run nothing and are left out. Anything unknown yields just the case
itself, so batching degrades to scoring one case at a time, never to scoring the wrong cases.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.run.internals import worker_queue


def items_ahead(item: pytest.Item) -> list[pytest.Item]:
    """The items this process will run after `item`, in order."""
    queued = worker_queue(item)  # xdist's private queue: harness/run/internals.py
    if queued is not None:
        return queued
    items = item.session.items
    try:
        at = next(i for i, other in enumerate(items) if other is item)
    except StopIteration:
        return []
    return items[at + 1:]


def same_kind_ahead(item: pytest.Item, param: str = "case") -> list[tuple[str, Any]]:
    """(node id, case) of the items ahead from the same test function with an equal case model,
    strategy and partner: the cases one batch may answer together."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or param not in callspec.params:
        return []
    mine = callspec.params[param]
    function = item.nodeid.split("[", 1)[0]
    found = []
    for other in items_ahead(item):
        spec = getattr(other, "callspec", None)
        if spec is None or other.nodeid.split("[", 1)[0] != function:
            continue
        case = spec.params.get(param)
        if case is None or other.get_closest_marker("skip") is not None:
            continue
        if (getattr(case, "model", None), getattr(case, "strategy", None), getattr(case, "large", None)) != \
                (mine.model, mine.strategy, mine.large):
            continue
        found.append((other.nodeid, case))
    return found
