"""A suite's items by the suite's name: what `harness import-tasks` reads before it writes them
into a store (the store takes plain items and does not import the suites)."""

from __future__ import annotations

import importlib
import inspect
import re

from harness.suites.base import Item

_SUITE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def load_suite(suite: str, source: str, split: str | None = None) -> tuple[str, list[Item]]:
    """(split, items) of a suite, through its own loader `harness.suites.<suite>.load`.

    The module is imported only now, so any suite with a loader can be imported into `tasks`
    (mmlu, mbpp, ...). Without `split`, the loader's default split is used and named; a loader
    without splits gives the split "all".
    """
    if not _SUITE_NAME.fullmatch(suite) or suite == "base":
        raise ValueError(f"{suite!r} is not a suite name")
    module_name = f"harness.suites.{suite}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ValueError(f"unknown suite {suite!r}: there is no {module_name} module") from None
    load = getattr(module, "load", None)
    if not callable(load):
        raise ValueError(f"suite {suite!r} has no load() to read its items with")
    parameters = inspect.signature(load).parameters
    if "split" not in parameters:
        if split is not None:
            raise ValueError(f"suite {suite!r} has no splits; leave out --split")
        return "all", list(load(source))
    chosen = split if split is not None else parameters["split"].default
    if chosen is inspect.Parameter.empty:
        raise ValueError(f"suite {suite!r} needs --split")
    return str(chosen), list(load(source, split=chosen))
