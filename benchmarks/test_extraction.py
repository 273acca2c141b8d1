"""Structured extraction: each CSV row is a case per model; the answer is JSON with the target fields.

Data: --extraction-data (a CSV with a `source` column; every other column is a target field) and
--extraction-template (a prompt with a {source} placeholder); default: the project's German
clinical-style sample in fixtures/extraction. An answer that is not valid JSON with every field is
status invalid_output, never a crash. At the end of the run the metrics CSV, predictions CSVs and
plots go to reports/<run>/extraction/ (see harness/report/extraction_metrics.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.plugin import Case, parametrize_cases
from harness.session import RunSession
from harness.strategies import single
from harness.suites import extraction

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "extraction"


def _data(run: RunSession) -> tuple[Path, Path]:
    s = run.settings
    return s.extraction_data or SAMPLE / "sample.csv", s.extraction_template or SAMPLE / "prompt.txt"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from harness.plugin import SESSION

    run = metafunc.config.stash[SESSION]
    data, template = _data(run)
    extraction.read_template(template)  # a bad template stops the run at collection, not per case
    items = extraction.load(data, samples=run.settings.samples, seed=run.settings.seed)
    parametrize_cases(metafunc, "extraction", items)


def test_extraction(case: Case, llm, record, harness: RunSession) -> None:
    s = harness.settings
    item = case.item
    _, template_path = _data(harness)
    template = harness.memo(("extraction-template", template_path),
                            lambda: extraction.read_template(template_path))
    fields = item.meta["fields"]
    schema = harness.memo(("extraction-schema", tuple(fields)), lambda: extraction.answer_model(fields))
    # A base model continues the one-shot pattern past its answer: the blank line ends it.
    stop = ("\n\n",) if case.model.prompt_style == "base" else ()
    output = single.complete(llm, extraction.prompt(template, item), max_tokens=s.extraction_max_tokens,
                             stop=stop, reference=item.reference)
    parsed = extraction.parse(output.text, schema)
    extra = {"output": output.text, "row": item.input["row"], "index": item.meta["index"]}
    if parsed.values is None:
        record(None, extraction.score(item, None), mode="generate", status="invalid_output",
               invalid_reason=parsed.problem, **extra)
    else:
        record(json.dumps(parsed.values, ensure_ascii=False), extraction.score(item, parsed.values),
               mode="generate", **extra)
