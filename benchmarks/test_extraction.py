"""Structured extraction: each CSV row is a case per model; the answer is JSON with the target fields.

Data: --extraction-data (a CSV with a `source` column; every other column is a target field) and
--extraction-template (a prompt with a {source} placeholder); default: the project's German
clinical-style sample in fixtures/extraction. An answer that is not valid JSON with every field is
status invalid_output, never a crash. At the end of the run the metrics CSV, predictions CSVs and
plots go to reports/<run>/extraction/ (see harness/report/extraction_metrics.py).
"""

from __future__ import annotations

import json

import pytest

from harness.run.plugin import Case, parametrize_cases
from harness.run.session import RunSession
from harness.strategies import single
from harness.suites import extraction


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_cases(metafunc, extraction.SUITE)  # a bad template stops the run at collection


def test_extraction(case: Case, llm, record, harness: RunSession, options: extraction.Options) -> None:
    item = case.item
    template_path = options.prompt_template
    template = harness.memo(("extraction-template", template_path),
                            lambda: extraction.read_template(template_path))
    fields = item.meta["fields"]
    schema = harness.memo(("extraction-schema", tuple(fields)), lambda: extraction.answer_model(fields))
    # A base model continues the one-shot pattern past its answer: the blank line ends it.
    stop = ("\n\n",) if case.model.prompt_style == "base" else ()
    output = single.complete(llm, extraction.prompt(template, item), max_tokens=options.max_tokens,
                             stop=stop, reference=item.reference)
    parsed = extraction.parse(output.text, schema, finish_reason=output.finish_reason,
                              max_tokens=options.max_tokens)
    extra = {"output": output.text, "row": item.input["row"], "index": item.meta["index"]}
    if parsed.values is None:
        record(None, extraction.score(item, None), mode="generate", status="invalid_output",
               invalid_reason=parsed.problem, **extra)
    else:
        record(json.dumps(parsed.values, ensure_ascii=False), extraction.score(item, parsed.values),
               mode="generate", **extra)
