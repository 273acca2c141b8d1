"""MMLU (Hendrycks et al., 2021): four-way multiple choice over 57 subjects.

Data comes either from a folder in the authors' CSV layout (no header; question, A, B, C, D,
answer letter) or from Hugging Face (`hf:cais/mmlu`). Prompts follow lm-evaluation-harness, so
scores compare with published figures; answers are scored as letters, whether they come from
log-likelihoods of CONTINUATIONS or from free text through `extract_answer`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.settings import option
from harness.suites import mmlu_subjects
from harness.suites.base import DataError, Item, Score, sample
from harness.suites.unit import LoadContext, Suite

LETTERS = ("A", "B", "C", "D")
# Continuations for log-likelihood scoring: the prompt ends in "Answer:" and the leading space
# belongs to the answer, as in lm-evaluation-harness (target_delimiter " ").
CONTINUATIONS = (" A", " B", " C", " D")
FIELDS = ("question", *LETTERS, "answer")

HF_DEFAULT = "cais/mmlu"
# The authors call it "val"; the Hugging Face copy calls it "validation".
_HF_SPLITS = {"val": "validation"}
# Subjects become part of test ids, so they must survive `pytest -k` and shell quoting.
_SUBJECT = re.compile(r"[A-Za-z0-9_]+")
STYLES = ("base", "chat")
CHAT_INSTRUCTION = "Answer with the letter of the correct option (A, B, C or D) only."


def load(
    source: str | Path,
    *,
    split: str = "test",
    subjects: Sequence[str] | None = None,
    per_subject: int | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """Items of one split, subjects in alphabetical order, rows in file order.

    `per_subject` keeps the first N rows of each subject (cheap and stable); `samples` then
    draws a seeded sample over the whole list, the same for every model.
    """
    # subject -> its CSV file (read below, once chosen) or, from Hugging Face, its items
    by_subject: dict[str, Path | list[Item]]
    if isinstance(source, str) and (source == "hf" or source.startswith("hf:")):
        by_subject = dict(_load_hf(source.partition(":")[2] or HF_DEFAULT, split))
    else:
        by_subject = dict(_find_files(Path(source), split))
    if isinstance(subjects, str):
        subjects = [subjects]  # a lone name is a str, itself a Sequence[str] of letters
    if subjects is not None:
        missing = sorted(set(subjects) - set(by_subject))
        if missing:
            raise DataError(
                source,
                f"subject(s) {', '.join(missing)} not in split {split!r}; "
                f"available: {', '.join(sorted(by_subject))}",
            )
        by_subject = {s: by_subject[s] for s in subjects}
    items: list[Item] = []
    for subject in sorted(by_subject):
        found = by_subject[subject]
        # Reading only chosen files means a subject filter skips their cost and their errors.
        rows = _read_csv(found, subject) if isinstance(found, Path) else found
        items += rows if per_subject is None else rows[:per_subject]
    return sample(items, samples, seed)


def few_shot(source: str | Path, subject: str, k: int, split: str = "dev") -> list[Item]:
    """The first k items of the subject's dev split, the authors' choice of examples."""
    if k <= 0:
        return []
    shots = load(source, split=split, subjects=[subject], per_subject=k)
    if len(shots) < k:
        # Fewer shots than asked would quietly change the task; say so instead.
        raise DataError(source, f"asked for {k} shots of {subject!r}, split {split!r} has {len(shots)}")
    return shots


def prompt(item: Item, shots: Sequence[Item] = (), style: str = "base") -> str:
    """The lm-evaluation-harness MMLU prompt, shots first.

    "base" matches lm-evaluation-harness exactly and ends in "Answer:" for completion models and
    log-likelihood scoring. "chat" keeps the header and the solved shots (they show the format)
    and ends the question with an instruction to reply with the letter alone, which chat models
    follow more reliably than a dangling "Answer:"; `extract_answer` reads the reply.
    """
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {STYLES}")
    subject = item.input["subject"].replace("_", " ")
    text = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    for shot in shots:
        text += f"{_question_block(shot)} {shot.reference}\n\n"
    if style == "chat":
        return text + _question_block(item).removesuffix("Answer:") + CHAT_INSTRUCTION
    return text + _question_block(item)


def _question_block(item: Item) -> str:
    lines = [item.input["question"].strip()]
    lines += [f"{letter}. {choice.strip()}" for letter, choice in zip(LETTERS, item.input["choices"])]
    return "\n".join(lines) + "\nAnswer:"


# Letter extraction, most explicit first. Lower-case letters count only after "answer is" /
# "Answer:" and only when nothing but punctuation follows, so "the answer is a bit unclear"
# is not read as A. An upper-case "A" followed by a word is the article, not an option.
_EXPLICIT = re.compile(
    r"(?i:\banswer(?:\s+is|\s*:))\s*:?\s*(?i:(?:option|choice)\s+)?[*_(\[]*\s*"
    r"(?:(?P<upper>[A-D])(?![\w'])|(?P<lower>[a-d])(?=[*_)\]]*[ \t]*(?:[.,;:!]|$)))",
    re.MULTILINE,
)
# The reply starts with the letter: "B", "(B)", "**B**", "B.", "B) foo", "B: foo", "B\nbecause".
# A letter set in bold ("**D** because") counts whatever follows it.
_LEADING = re.compile(r"\A[\s*_(\[]*(?P<letter>[A-D])(?:\*\*|__|[*_]*(?:[.):,\]]|[ \t]*(?:\n|\Z)))")
# "B is correct", "I think C is the right one": a claim about one option.
_CLAIM = re.compile(r"(?<![\w'])(?P<letter>[A-D])\s+is\s+(?:the\s+)?(?:correct|right|best)\b")
# Anywhere: a lone letter followed by punctuation or a line end ("I'd pick C.", "it is (D)").
_STANDALONE = re.compile(r"(?<![\w'])[(\[*]*(?P<letter>[A-D])(?=[*)\]]*(?:[.):,;!?]|[ \t]*$))", re.MULTILINE)


def extract_answer(text: str) -> str | None:
    """The option letter a free-form reply commits to, or None when there is none to credit."""
    explicit = list(_EXPLICIT.finditer(text))
    if explicit:
        # The last one: a model that reconsiders ends on its final word.
        last = explicit[-1]
        return (last["upper"] or last["lower"]).upper()
    for pattern in (_LEADING, _CLAIM, _STANDALONE):
        match = pattern.search(text)
        if match:
            return match["letter"]
    return None


def score(item: Item, prediction: str | None) -> Score:
    correct = prediction is not None and prediction == item.reference
    return Score(correct=correct, scores={"accuracy": 1.0 if correct else 0.0})


def shown(item: Item, prediction: str | None, width: int = 100) -> str:
    """--show-answers: the question (cut to `width`), the answer given, the reference, the verdict."""
    question = " ".join(str(item.input["question"]).split())
    if len(question) > width:
        question = question[: width - 3] + "..."
    verdict = "right" if prediction is not None and prediction == item.reference else "WRONG"
    given = prediction if prediction is not None else "(no letter)"
    return f"{item.id}: {question} | answer {given}, reference {item.reference}: {verdict}"


def _find_files(root: Path, split: str) -> dict[str, Path]:
    """subject -> CSV file, from <root>/<split>/ (the authors' data/ folder) or a flat <root>/."""
    if not root.is_dir():
        raise DataError(root, "no such folder")
    folder = root / split if (root / split).is_dir() else root
    suffix = f"_{split}.csv"
    files = {p.name[: -len(suffix)]: p for p in folder.glob(f"*{suffix}") if p.is_file()}
    if not files:
        raise DataError(folder, f"no *{suffix} files for split {split!r}")
    for subject, path in files.items():
        if not _SUBJECT.fullmatch(subject):
            raise DataError(path, f"subject name {subject!r} must be letters, digits and underscores")
    return files


def _read_csv(path: Path, subject: str) -> list[Item]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
        undecodable = False
    except UnicodeDecodeError:
        # Decode anyway with the bad bytes kept as surrogates, so the error can name the row
        # and the field that holds them rather than a byte offset.
        text = data.decode("utf-8-sig", errors="surrogateescape")
        undecodable = True
    # strict: an unclosed quote is an error, not a field that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    items: list[Item] = []
    while True:
        line = reader.line_num + 1  # where the next row starts; rows may span lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DataError(path, f"malformed CSV: {error}", line=line) from None
        if not row:
            continue  # a blank line, usually the last one
        items.append(_item(path, line, subject, len(items), row, undecodable))
    return items


def _item(path: Path, line: int, subject: str, index: int, row: list[str], undecodable: bool) -> Item:
    if len(row) != len(FIELDS):
        expected = f"expected {len(FIELDS)} columns ({', '.join(FIELDS)}), found {len(row)}"
        raise DataError(path, expected, line=line)
    if undecodable:
        for name, value in zip(FIELDS, row):
            if any("\udc80" <= ch <= "\udcff" for ch in value):
                raise DataError(path, "bytes that are not UTF-8", line=line, field=name)
    question, *choices, answer = row
    if not question.strip():
        raise DataError(path, "empty question", line=line, field="question")
    answer = answer.strip()
    if answer not in LETTERS:
        raise DataError(path, f"answer {answer!r} is not one of A, B, C, D", line=line, field="answer")
    return Item(
        id=f"{subject}-{index}",
        input={"subject": subject, "question": question, "choices": choices},
        reference=answer,
        meta={"file": str(path), "line": line},
    )


def _load_hf(name: str, split: str) -> dict[str, list[Item]]:
    """subject -> items from the Hugging Face copy (columns question, subject, choices, answer)."""
    try:
        from datasets import load_dataset  # heavy and optional: only this path needs it
    except ImportError as error:
        raise ImportError(f"loading hf:{name} needs the 'datasets' package (pip install datasets)") from error
    rows: Any = load_dataset(name, "all", split=_HF_SPLITS.get(split, split))
    by_subject: dict[str, list[Item]] = {}
    for index, row in enumerate(rows):
        subject, choices, answer = row["subject"], list(row["choices"]), row["answer"]
        where = f"hf:{name} {split} row {index}"
        if not _SUBJECT.fullmatch(subject) or len(choices) != 4 or answer not in range(4):
            raise DataError(where, f"unexpected subject/choices/answer: {subject!r}, {choices!r}, {answer!r}")
        items = by_subject.setdefault(subject, [])
        items.append(
            Item(
                id=f"{subject}-{len(items)}",
                input={"subject": subject, "question": row["question"], "choices": choices},
                reference=LETTERS[answer],
                meta={"file": f"hf:{name}", "line": None, "index": index},
            )
        )
    return by_subject


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "mmlu"


@dataclass(frozen=True)
class Options:
    data: str | None = option("MMLU data: a folder in the authors' CSV layout, or hf:cais/mmlu",
                              shown_default="the project's sample in fixtures/mmlu")
    split: str = option("MMLU split to evaluate", "test", choices=("test", "val", "dev"))
    subjects: tuple[str, ...] | None = option(
        "MMLU subjects, comma-separated: names, or presets (baseline: 2 subjects, extended: 10; stem, "
        "humanities, social, other: MMLU's categories)", shown_default="all in the data")
    per_subject: int | None = option("first N questions of each MMLU subject", minimum=1)
    shots: int = option("few-shot examples from the dev split", 0, minimum=0)
    mode: str = option("auto (loglikelihood where the backend can), loglikelihood or generate", "auto",
                       choices=("auto", "loglikelihood", "generate"))
    show_answers: bool = option("print each case's question, answer and verdict as it runs", False, flag=True,
                                aliases=("--show-answers",))

    @property
    def source(self) -> str:
        return self.data or str(SAMPLE)


def _load(options: Options, context: LoadContext) -> list[Item]:
    subjects = None if options.subjects is None else mmlu_subjects.expand(options.subjects)
    return load(options.source, split=options.split, subjects=subjects, per_subject=options.per_subject,
                samples=context.samples, seed=context.seed)


SUITE = Suite("mmlu", load=_load, options=Options, tags=("subject",), reports=("harness.report.mmlu_analysis",),
              description="MMLU: four-way multiple choice over 57 subjects")
