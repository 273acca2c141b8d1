"""What every suite shares: the item and score types, data errors, and seeded sampling."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
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


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file (.gz too).

    The bytes are decoded line by line, so an undecodable byte is reported with its line, and
    every problem names the file and the line.
    """
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.suffix == ".gz":
        import gzip  # only compressed files need it; suites load this module in every pytest session

        data = gzip.decompress(path.read_bytes())
    else:
        data = path.read_bytes()
    for index, raw in enumerate(data.splitlines()):
        line = index + 1
        try:
            text = raw.decode("utf-8-sig" if index == 0 else "utf-8")
        except UnicodeDecodeError as error:
            raise DataError(path, f"bytes that are not UTF-8 at column {error.start + 1}", line=line) from None
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(path, f"not a JSON line: {error.msg}", line=line) from None
        if not isinstance(row, dict):
            raise DataError(path, f"expected a JSON object, found {type(row).__name__}", line=line)
        yield line, row


def sample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """The same n items for every model and strategy, in their original order.

    Selection depends only on (items, n, seed), never on the model, so comparisons line up.
    """
    if n is None or n >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in chosen]


_TEXT_KEYS = ("question", "text", "prompt", "source", "template")
_DESCRIBE_LIMIT = 4000  # characters kept in a record: enough to read an item, not a whole file


def describe(item: Item) -> str:
    """The item's input as a person reads it, for reports and the item browser: the question with
    its lettered choices (MMLU), the task text (MBPP), the prompt (HumanEval), the source text
    (extraction), the component and its task (Vue). Long inputs are cut, marked with `…`."""
    data = item.input
    text = next((data[key] for key in _TEXT_KEYS if isinstance(data.get(key), str)), "")
    if isinstance(data.get("component"), str):
        text = f"{data['component']}\n\n{text}"
    choices = data.get("choices")
    if isinstance(choices, (list, tuple)) and choices:
        text += "\n" + "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(choices))
    text = text.strip()
    return text if len(text) <= _DESCRIBE_LIMIT else text[: _DESCRIBE_LIMIT - 1] + "…"
