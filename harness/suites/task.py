"""What a task file does (harness/suites/taskfile.py reads it): its items, prompts, answers and scores.

The answer extraction and the scorers are the built-in suites' own (gsm8k's number reading, MMLU's
letter reading, the extraction suite's JSON validation and per-field exact match), so a task file
that asks what a built-in suite asks gets the same predictions and scores (tests/test_task_files.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.suites import extraction, gsm8k, mmlu
from harness.suites.base import DataError, Item, Score, json_lines, sample
from harness.suites.taskfile import PLACEHOLDER, TaskError, TaskSpec, read
from harness.suites.unit import LoadContext, Suite

SHOTS = "shots"


@dataclass(frozen=True)
class Answer:
    prediction: str | None
    values: dict[str, str] | None = None  # extract = "json": the validated fields
    problem: str | None = None  # why the output could not be read (status invalid_output)


@dataclass(frozen=True)
class Task:
    spec: TaskSpec

    @classmethod
    def from_file(cls, path: Path) -> Task:
        return cls(read(path))

    # -- items ----------------------------------------------------------------------------------
    def items(self, source: str | None = None) -> list[Item]:
        """The items of the data file (or of one of its named splits), in file order."""
        source = source or self.spec.data
        rows = _rows(self.spec, source)
        if self.spec.strip:
            rows = [(line, {k: v.strip() for k, v in row.items()}) for line, row in rows]
        items = [self._item(source, index, line, row) for index, (line, row) in enumerate(rows)]
        if not items:
            raise DataError(source, "no rows")
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.id in seen:
                raise TaskError(self.spec.path, "data.id", f"rows {seen[item.id]} and {index} both get the id "
                                                           f"{item.id!r}; ids must be unique")
            seen[item.id] = index
        self._check_templates(items[0])
        return items

    def shot_items(self) -> list[Item]:
        """The few-shot examples, the same for every item and model."""
        spec = self.spec
        if spec.shots <= 0 or spec.shots_split is None:
            return []
        pool = self.items(spec.splits[spec.shots_split])
        shots = pool[: spec.shots] if spec.pick == "first" else sample(pool, spec.shots, spec.seed)
        if len(shots) < spec.shots:
            raise DataError(spec.splits[spec.shots_split], f"asked for {spec.shots} shots, found {len(shots)}")
        return shots

    def _item(self, source: str, index: int, line: int | None, row: dict[str, str]) -> Item:
        spec = self.spec
        values = {**row, **spec.constants}
        for derive in spec.derive:
            if derive.source not in values:
                raise TaskError(spec.path, f"data.derive {derive.name}.from", f"no field {derive.source!r} in the "
                                                                              f"row; fields: {', '.join(values)}")
            value = values[derive.source]
            if derive.search is not None:
                found = derive.search.search(value)
                if found is None:
                    raise DataError(source, f"data.derive {derive.name}: {derive.search.pattern!r} finds nothing",
                                    line=line, field=derive.source)
                value = found.group(1) if found.re.groups else found.group(0)
            if derive.remove is not None:
                value = derive.remove.sub("", value)
            value = value.strip() if derive.strip else value
            if derive.number:
                number = gsm8k.normalize_number(value)
                if number is None:
                    raise DataError(source, f"data.derive {derive.name}: {value!r} is not a number", line=line,
                                    field=derive.source)
                value = number
            values[derive.name] = value
        numbers = {**values, "index": str(index), "number": str(index + 1)}
        item_id = _fill(spec.id_template, numbers, spec.path, "data.id")
        if spec.extract == "json":
            missing = [f for f in spec.fields if f not in values]
            if missing:
                raise TaskError(spec.path, "answer.fields", f"{', '.join(missing)} not among the data's fields "
                                                            f"({', '.join(values)})")
            reference = json.dumps({f: values[f] for f in spec.fields}, ensure_ascii=False)
        elif spec.reference not in values:
            raise TaskError(spec.path, "data.reference", f"no field {spec.reference!r}; fields: {', '.join(values)}")
        else:
            reference = values[spec.reference]
        meta: dict[str, Any] = {"file": source, "line": line, "index": index, "fields": list(spec.fields)}
        return Item(id=item_id, input=values, reference=reference, meta=meta)

    def _check_templates(self, item: Item) -> None:
        spec = self.spec
        for key, template, known in (("prompt.template", spec.template, {*item.input, SHOTS}),
                                     ("prompt.chat_template", spec.chat_template or "", {*item.input, SHOTS}),
                                     ("prompt.shot", spec.shot, {*item.input})):
            for name in PLACEHOLDER.findall(template):
                if name not in known:
                    raise TaskError(spec.path, key, f"{{{name}}} is not a field of the data; takes {{field}} "
                                                    f"placeholders of {', '.join(sorted(known))}")

    # -- asking -----------------------------------------------------------------------------------
    def prompt(self, item: Item, shots: Sequence[Item] = (), style: str = "base") -> str:
        spec = self.spec
        examples = "".join(_fill(spec.shot, shot.input, spec.path, "prompt.shot") for shot in shots)
        template = spec.chat_template if style == "chat" and spec.chat_template is not None else spec.template
        return _fill(template, {**item.input, SHOTS: examples}, spec.path, "prompt.template")

    def continuation_of(self, item: Item) -> str | None:
        """The choice whose label is the reference (what the oracle test double scores as certain)."""
        labels = self.spec.labels
        return self.spec.choices[labels.index(item.reference)] if item.reference in labels else None

    # -- reading and scoring ------------------------------------------------------------------------
    def answer(self, text: str) -> Answer:
        spec = self.spec
        if spec.extract == "number":
            return Answer(gsm8k.extract_answer(text))
        if spec.extract == "choice":
            return Answer(mmlu.extract_answer(text))
        if spec.extract == "regex":
            assert spec.pattern is not None
            found = spec.pattern.search(text)
            if found is None:
                return Answer(None)
            group = "answer" if "answer" in spec.pattern.groupindex else (1 if spec.pattern.groups else 0)
            return Answer(found.group(group).strip())
        if spec.extract == "json":
            parsed = extraction.parse(text, extraction.answer_model(spec.fields))
            if parsed.values is None:
                return Answer(None, None, parsed.problem)
            return Answer(json.dumps(parsed.values, ensure_ascii=False), parsed.values)
        return Answer(text.strip())

    def score(self, item: Item, answer: Answer) -> Score:
        kind, prediction = self.spec.score, answer.prediction
        if kind == "extraction":
            return extraction.score(item, answer.values)
        if kind == "numeric":
            return gsm8k.score(item, prediction)
        if kind == "contains":
            correct = prediction is not None and item.reference.strip().lower() in prediction.lower()
        else:
            correct = prediction is not None and prediction.strip() == item.reference.strip()
        return Score(correct=correct, scores={"accuracy": 1.0 if correct else 0.0})


@dataclass(frozen=True, eq=False)
class TaskSuite(Suite):
    """A task file as a registered suite: its items, and the Task the benchmark asks with."""

    task: Task | None = field(default=None, kw_only=True)


def suite(path: Path) -> TaskSuite:
    task = Task.from_file(path)

    def load(options: Any, context: LoadContext) -> list[Item]:
        return sample(task.items(), context.samples, context.seed)

    return TaskSuite(task.spec.name, load=load, tags=task.spec.tags, description=task.spec.description, task=task)


# -- rows of a data file ------------------------------------------------------------------------------
def _fill(template: str, values: Mapping[str, str], path: Path, key: str) -> str:
    # Only {identifier} placeholders: templates may hold JSON examples full of braces.
    def one(match: Any) -> str:
        name = match.group(1)
        if name not in values:
            raise TaskError(path, key, f"{{{name}}} is not a field of the data ({', '.join(values)})")
        return str(values[name])

    return PLACEHOLDER.sub(one, template)


def _rows(spec: TaskSpec, source: str) -> list[tuple[int | None, dict[str, str]]]:
    if source.startswith("hf:"):
        return _hf_rows(spec, source)
    path = Path(source)
    if path.suffix in (".jsonl", ".gz"):
        return [(line, {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                        for k, v in row.items()}) for line, row in json_lines(path)]
    if path.suffix != ".csv":
        raise TaskError(spec.path, "data.path", f"{path.name}: takes a .csv or .jsonl file, or hf:NAME")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read: {exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = list(spec.columns) if spec.columns is not None else None
    rows: list[tuple[int | None, dict[str, str]]] = []
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(path, f"malformed CSV: {exc}", line=line) from None
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            raise DataError(path, f"{len(cells)} cells, expected {len(header)} ({', '.join(header)})", line=line)
        rows.append((line, dict(zip(header, cells))))
    return rows


def _hf_rows(spec: TaskSpec, source: str) -> list[tuple[int | None, dict[str, str]]]:
    """hf:NAME[@CONFIG][:SPLIT] (split "test" unless given), through the `datasets` package."""
    try:
        from datasets import load_dataset  # heavy and optional: only hf: data needs it
    except ImportError:
        raise TaskError(spec.path, "data.path", f"{source} needs the 'datasets' package "
                                                "(pip install datasets)") from None
    name, _, split = source[3:].partition(":")
    dataset, _, config = name.partition("@")
    rows: Any = load_dataset(dataset, config or None, split=split or "test")
    return [(None, {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in row.items()})
            for row in rows]
