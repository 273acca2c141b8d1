"""What every suite shares: the item and score types, data errors, and seeded sampling."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar


class DataError(ValueError):
    """Bad input data. The message names the file, the line and the field."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.field = field


@dataclass(frozen=True)
class Item:
    """One task item. `id` is unique within the suite and safe in a pytest id."""

    id: str
    input: dict[str, Any]
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    correct: bool
    scores: dict[str, float] = field(default_factory=dict)


T = TypeVar("T")


def sample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """The same n items for every model and strategy, in their original order.

    Selection depends only on (items, n, seed), never on the model, so comparisons line up.
    """
    if n is None or n >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in chosen]
