"""GSM8K (Cobbe et al., 2021): grade-school math word problems, scored on the final number.

Data comes from the authors' JSON lines (`question`; `answer`: a worked solution with `<<a*b=c>>`
calculator annotations, ending in `#### N`): a single file, a folder holding `<split>.jsonl`
(their layout: train.jsonl, test.jsonl), or Hugging Face (`hf:gsm8k`, config main; `hf:NAME@CONFIG`
for another). The reference is the number after `####`, normalized.

A model's output is read by `extract_answer`: the `####` convention first, then "The answer is N",
then the last number; `score` compares numbers exactly (Decimal equality), so "$1,000.00" and
"1000" are the same answer. Base models get few-shot chain-of-thought prompts whose worked
examples end in "The answer is N."; chat models get a plain instruction asking for that line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from harness.core.settings import option
from harness.suites.base import DataError, Item, Score, json_lines, sample
from harness.suites.unit import LoadContext, Suite

STYLES = ("base", "chat")
# Base models, given "Question: ...\nAnswer:", tend to go on with a question of their own.
STOP = ("\nQuestion:", "\n\nQuestion")
HF_DEFAULT = "gsm8k"
HF_CONFIG = "main"
CHAT_INSTRUCTION = ("Solve the problem. Show your reasoning briefly, "
                    "then give the final line as 'The answer is N.'")
# A split name becomes part of every item id, so it must survive `pytest -k` and shell quoting.
_SPLIT = re.compile(r"[A-Za-z0-9_]+")
_FIELDS = ("question", "answer")

# -- numbers ------------------------------------------------------------------------------------

_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
_CURRENCY = "$€£"
# The digits of one number: thousands groups ("1,000,000", only groups of exactly three, so
# "1,2,3" is a list of three numbers), plain digits, an optional decimal part, or ".5".
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
# A number in free text. It may not start right after a letter, digit, underscore or period, nor
# after a hyphen that follows a letter: "x2", "H2O" and "COVID-19" hold no answer, "1.2.3" gives
# 1.2 and no stray ".3", and in "10-3" the minus is a subtraction. A sign counts only when it
# touches the number or its currency sign ("-7", "-$5", "$-5", "−3").
_NUMBER = re.compile(
    rf"(?<![\w.])(?<![^\W\d_][{_MINUS}])"
    rf"(?:[{_MINUS}](?=[{_CURRENCY}]?\d|\.\d))?[{_CURRENCY}]?(?:[{_MINUS}](?=\d|\.\d))?(?:{_DIGITS})"
)
# What `normalize_number` accepts: one number with its decorations, and nothing else but a
# trailing unit ("7 apples", "12 dollars per hour", "15 km/h") and end punctuation.
_LONE_NUMBER = re.compile(
    rf"(?P<sign1>[{_MINUS}+])?\s*[{_CURRENCY}]?\s*(?P<sign2>[{_MINUS}])?(?P<digits>{_DIGITS})"
    rf"\s*%?\s*(?:[^\W\d_][\w/'.-]*(?:\s+[^\W\d_][\w/'.-]*)*)?[.!;:,]*"
)


def normalize_number(text: str) -> str | None:
    """The canonical form of one number, or None when `text` is not one.

    Strips whitespace, currency signs ($ € £), thousands commas, %, a trailing period and a
    trailing unit word or words; reads "-3" and "−3" (Unicode minus) as negative. Equal numbers
    give equal strings: "5.00" -> "5", "2.50" -> "2.5", "-0" -> "0", "1,000" -> "1000".
    """
    match = _LONE_NUMBER.fullmatch(text.strip().strip("*_"))
    if match is None or (match["sign1"] and match["sign2"]):
        return None
    negative = (match["sign1"] or match["sign2"] or "+") in _MINUS
    try:
        value = Decimal(match["digits"].replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid digits
        return None
    return _canonical(-value if negative else value)


def _canonical(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))  # int() drops "-0" and never writes an exponent
    return format(value.normalize(), "f")


# -- reading a model's output -------------------------------------------------------------------

# Where a base model starts a new few-shot block: nothing after it is part of this answer.
_CONTINUATIONS = ("\nQuestion:", "\n\nQ:")
_HASHES = "####"
# "The answer is 18", "answer: $18", "The final answer is: **18**"; the number must follow.
_ANSWER_IS = re.compile(r"\banswer\s*(?:is|was|=|:)[\s:=*_]*(?:\\boxed\{)?", re.IGNORECASE)
# The end of the sentence that states the answer (a decimal point is followed by a digit).
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")
# "= 40" at the end of a stated calculation: "The answer is 220 / 2.5 = 40 kilometers."
_LAST_RESULT = re.compile(r"=[\s*_]*(?=\S)")


def extract_answer(text: str) -> str | None:
    """The number a free-form answer commits to, normalized; None when it holds no number.

    In order: the first number after the last "####" (the dataset's convention); the number
    right after the last "The answer is" / "answer:" (or, when that sentence goes on with a
    calculation, the result after its last "="); the last number in the text. The text is
    first cut where a base model starts another "Question:" of its own. A number glued to the
    letters before it ("x2", "H2O") is not a number; one followed by a unit ("5kg") is.
    Fractions ("1/2") are not evaluated: the last number there is the denominator.
    """
    for marker in _CONTINUATIONS:
        cut = text.find(marker)
        if cut != -1:
            text = text[:cut]
    if _HASHES in text:
        found = _NUMBER.search(text.rpartition(_HASHES)[2])
        if found:
            return normalize_number(found[0])
    for phrase in reversed(list(_ANSWER_IS.finditer(text))):
        stated = _stated_number(text, phrase.end())
        if stated is not None:
            return stated
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def _stated_number(text: str, start: int) -> str | None:
    """The number right after an answer phrase, or, where the phrase goes on with a calculation
    ("The answer is 3 + 4 = 7."), the result after the sentence's last "="."""
    found = _NUMBER.match(text, start)
    if found is None:
        return None
    end = _SENTENCE_END.search(text, found.end())
    sentence = text[found.end(): end.start() if end else len(text)]
    results = list(_LAST_RESULT.finditer(sentence))
    if results:
        result = _NUMBER.match(sentence, results[-1].end())
        if result:
            return normalize_number(result[0])
    return normalize_number(found[0])


def score(item: Item, prediction: str | None) -> Score:
    """Exact numeric comparison: "1,000" and "1000.0" both match a reference of 1000."""
    predicted = normalize_number(prediction) if prediction is not None else None
    correct = predicted is not None and Decimal(predicted) == Decimal(item.reference)
    return Score(correct=correct, scores={"accuracy": 1.0 if correct else 0.0})


# -- prompts ------------------------------------------------------------------------------------

_ANNOTATION = re.compile(r"<<.*?>>")


def worked_solution(item: Item) -> str:
    """The solution as a model should write it: no calculator annotations, ending in
    "The answer is N." in place of the "#### N" line."""
    steps = item.meta["solution"].rpartition(_HASHES)[0]
    steps = _ANNOTATION.sub("", steps).strip()
    final = f"The answer is {item.reference}."
    return f"{steps}\n{final}" if steps else final


def prompt(item: Item, shots: Sequence[Item] = (), style: str = "base") -> str:
    """base: "Question: ...\\nAnswer: <worked solution>\\n\\n" per shot, then the question and
    "Answer:" to complete (stop at STOP). chat: the instruction, the same worked shots if any,
    then the question; the reply's last line is expected to be "The answer is N."."""
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    examples = "".join(f"Question: {shot.input['question'].strip()}\nAnswer: {worked_solution(shot)}\n\n"
                       for shot in shots)
    question = f"Question: {item.input['question'].strip()}"
    if style == "chat":
        return f"{CHAT_INSTRUCTION}\n\n{examples}{question}"
    return f"{examples}{question}\nAnswer:"


def router_instructions() -> str:
    """The delegation router's system message for GSM8K (the large model's brief)."""
    return ("You solve math word problems. You may call the tool ask_small_model to hand a sub-task or "
            "the whole question to a small, cheap math model; its answer can be wrong, so check it. "
            "End with a final line 'The answer is N.'")


def few_shot(source: str | Path, k: int, seed: int = 0) -> list[Item]:
    """k worked examples for base-model prompts, the same for every item and model.

    From a folder (or Hugging Face) they are a seeded sample of the train split, never the
    items being scored. From a single file they are its first k items, since it has no other
    split: those items then also appear as questions, with their solution in the prompt.
    """
    if k <= 0:
        return []
    if _is_hf(source) or Path(source).is_dir():
        shots = sample(load(source, split="train"), k, seed)
    else:
        shots = load(source)[:k]
    if len(shots) < k:
        # Fewer shots than asked would quietly change the task; say so instead.
        raise DataError(source, f"asked for {k} shots, found {len(shots)}")
    return shots


# -- reading the data ---------------------------------------------------------------------------


def load(source: str | Path, *, split: str = "test", samples: int | None = None, seed: int = 0) -> list[Item]:
    """Items of one split in file order, ids "<split>-<0-based line>"; `samples` draws the same
    seeded sample for every model. A single file is read whole, its items named after `split`."""
    if not _SPLIT.fullmatch(split):
        raise ValueError(f"split {split!r} must be letters, digits and underscores")
    if _is_hf(source):
        name = str(source).partition(":")[2] or HF_DEFAULT
        items = list(_load_hf(name, split))
    else:
        items = list(_read_jsonl(_find_file(Path(source), split), split))
    if not items:
        raise DataError(source, f"no items in split {split!r}")
    return sample(items, samples, seed)


def _is_hf(source: str | Path) -> bool:
    return isinstance(source, str) and (source == "hf" or source.startswith("hf:"))


def _find_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    own = path / f"{split}.jsonl"
    if not own.is_file():
        present = sorted(p.name for p in path.glob("*.jsonl") if p.is_file())
        listing = ", ".join(present) or "none"
        raise DataError(path, f"no {own.name} for split {split!r}; split files here: {listing}")
    return own


def _read_jsonl(path: Path, split: str) -> Iterator[Item]:
    for line, row in json_lines(path):
        yield _item(row, f"{split}-{line - 1}", path, line)


def _item(row: dict[str, Any], item_id: str, path: Path | str, line: int | None) -> Item:
    for name in _FIELDS:
        value = row.get(name)
        if value is None:
            raise DataError(path, "missing", line=line, field=name)
        if not isinstance(value, str):
            raise DataError(path, f"expected a string, found {type(value).__name__}", line=line, field=name)
        if not value.strip():
            raise DataError(path, "empty", line=line, field=name)
    solution: str = row["answer"]
    if _HASHES not in solution:
        raise DataError(path, "no '#### N' final answer", line=line, field="answer")
    final = solution.rpartition(_HASHES)[2].strip()
    reference = normalize_number(final)
    if reference is None:
        problem = f"final answer {final!r} after '####' is not a number"
        raise DataError(path, problem, line=line, field="answer")
    return Item(
        id=item_id,
        input={"question": row["question"]},
        reference=reference,
        meta={"file": str(path), "line": line, "solution": solution},
    )


def _load_hf(name: str, split: str) -> Iterator[Item]:
    """`gsm8k` (config main), or `NAME@CONFIG` (e.g. `gsm8k@socratic`)."""
    try:
        from datasets import load_dataset  # heavy and optional: only this path needs it
    except ImportError as error:
        raise ImportError(f"loading hf:{name} needs the 'datasets' package (pip install datasets)") from error
    dataset, _, config = name.partition("@")
    rows: Any = load_dataset(dataset, config or HF_CONFIG, split=split)
    for index, row in enumerate(rows):
        item = _item(dict(row), f"{split}-{index}", f"hf:{name} {split} row {index}", None)
        yield Item(id=item.id, input=item.input, reference=item.reference,
                   meta={**item.meta, "file": f"hf:{name}", "index": index})


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "gsm8k"


@dataclass(frozen=True)
class Options:
    data: str | None = option("GSM8K data: a JSON-lines file, a folder with <split>.jsonl, or hf:gsm8k",
                              shown_default="the project's sample in fixtures/gsm8k")
    split: str = option("GSM8K split when the data is a folder", "test")
    shots: int = option("worked examples in base-model prompts", 2, minimum=0)
    max_tokens: int = option("tokens a GSM8K answer may take", 256, minimum=1)
    samples_per_item: int = option("answers per GSM8K item for the agreement confidence: the greedy answer (the "
                                   "prediction) and k - 1 samples at temperature 0.8, each counted in the case's "
                                   "usage; the share agreeing with the greedy answer is the record's confidence "
                                   "(1: off)", 1, minimum=1, aliases=("--samples-per-item",))

    @property
    def source(self) -> str:
        return self.data or str(SAMPLE)


def _load(options: Options, context: LoadContext) -> list[Item]:
    return load(options.source, split=options.split, samples=context.samples, seed=context.seed)


SUITE = Suite("gsm8k", load=_load, options=Options, description="GSM8K: grade-school math, the final number")
