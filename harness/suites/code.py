"""What the code-generation suites share: reading code out of a model's answer, and the task a
strategy solves (a prompt, how to turn an answer into a program, and checking that program).

Pure Python: running a program is the sandbox's job (harness/sandbox/__init__.py); a CodeTask only says
which program to run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A fenced block: ```python ... ``` (or ```py, or no language); the last one may be unclosed when
# generation hit its token limit.
_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_LANGS = {"", "python", "python3", "py"}
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+\w+\s*\(", re.MULTILINE)


def truncate_at_stops(text: str, stops: Sequence[str]) -> str:
    """Cut the text at the first stop sequence (backends that ignore `stop` still get cut)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if stop and index != -1:
            cut = min(cut, index)
    return text[:cut]


def extract_code(text: str, stops: Sequence[str] = ()) -> str:
    """The program in a model's answer, fenced or bare.

    Fenced: the first Python block that defines a function, else the first Python block.
    Bare: the text itself, cut at the stop sequences, without a leading `[BEGIN]` (MBPP's marker).
    Leading indentation is kept: a completion-style answer is a function body.
    """
    text = truncate_at_stops(text, stops)
    blocks = [m["code"] for m in _FENCE.finditer(text) if m["lang"].lower() in _PYTHON_LANGS]
    if blocks:
        defining = [b for b in blocks if _DEF.search(b)]
        return (defining or blocks)[0].rstrip() + "\n"
    bare = re.sub(r"\A\s*\[BEGIN\]\s*\n?", "", text)
    return bare.rstrip() + "\n" if bare.strip() else ""


def defines_function(code: str, name: str) -> bool:
    """Whether `code` defines `name` at the top level (a whole function, not a body)."""
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


_CALLED = re.compile(r"\bassert\s+(?:not\s+)?[(\s]*(?:math\.isclose\(\s*|set\(\s*)?(?P<name>[A-Za-z_]\w*)\s*\(")


def function_under_test(tests: Sequence[str]) -> str | None:
    """The function the tests call (`assert name(...) == ...`), for prompts and error messages."""
    for test in tests:
        match = _CALLED.search(test)
        if match and match["name"] not in {"isinstance", "len", "abs", "round", "sorted", "all", "any"}:
            return match["name"]
    return None


@dataclass(frozen=True)
class CodeTask:
    """One code item as a strategy sees it.

    `prompt` is what the model reads; `stops` end its answer; `reference` is the answer the
    oracle gives back; `program(answer_text)` turns the model's raw answer into the program whose
    exit status says whether the tests pass.
    """

    item_id: str
    prompt: str
    stops: tuple[str, ...]
    reference: str
    program: Callable[[str], str]
    max_tokens: int = 256
