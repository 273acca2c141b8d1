"""The extraction suite: loading the CSV and template, building the answer model, reading answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import PROJECT

from harness.suites import extraction
from harness.suites.base import DataError

SAMPLE = PROJECT / "fixtures" / "extraction"
FIELDS = ["diagnose", "medikation", "dosierung"]


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_the_sample_loads_eight_rows_with_three_target_fields() -> None:
    items = extraction.load(SAMPLE / "sample.csv")
    assert [item.id for item in items] == [f"row-{n}" for n in range(1, 9)]
    assert all(item.meta["fields"] == FIELDS for item in items)
    first = items[0]
    assert json.loads(first.reference) == {"diagnose": "Diabetes mellitus Typ 2",
                                           "medikation": "Metformin 1000 mg", "dosierung": "1-0-1"}
    assert first.input["source"].startswith("Herr M., 58 Jahre")
    assert list(first.input["row"]) == ["source", *FIELDS]
    # A quoted cell with a comma stays one cell.
    assert json.loads(items[1].reference)["medikation"] == "Bisoprolol 2,5 mg"


def test_samples_draw_the_same_rows_for_the_same_seed() -> None:
    a = extraction.load(SAMPLE / "sample.csv", samples=3, seed=1)
    b = extraction.load(SAMPLE / "sample.csv", samples=3, seed=1)
    assert [i.id for i in a] == [i.id for i in b] and len(a) == 3


def test_the_prompt_puts_the_source_in_place_and_keeps_json_braces() -> None:
    template = extraction.read_template(SAMPLE / "prompt.txt")
    item = extraction.load(SAMPLE / "sample.csv")[0]
    text = extraction.prompt(template, item)
    assert "{source}" not in text and item.input["source"] in text
    assert '{"diagnose": "akuter Gichtanfall"' in text  # the one-shot example, untouched
    assert text.endswith("JSON:\n")


def test_prediction_columns_of_an_earlier_run_are_not_targets(tmp_path: Path) -> None:
    path = write(tmp_path, "source,diagnose,pred_diagnose,raw_gemma\nText eins,Grippe,Grippe,{}\n")
    [item] = extraction.load(path)
    assert item.meta["fields"] == ["diagnose"]
    assert json.loads(item.reference) == {"diagnose": "Grippe"}


@pytest.mark.parametrize(("content", "expected"), [
    ("", "the CSV is empty"),
    ("\n\n", "the CSV is empty"),
    ("source,diagnose\n", "header but no data rows"),
    ("text,diagnose\nEin Text,Grippe\n", "line 1: no 'source' column (columns: text, diagnose)"),
    ("source\nEin Text\n", "line 1: no target column"),
    ("source,diagnose,dosierung\nEin Text,Grippe,1-0-1\nZwei,Asthma\n",
     "line 3: row 2 has 2 cells, the header 3: missing dosierung"),
    ("source,diagnose\nEin Text,Grippe,extra\n", "line 2: row 1 has 3 cells, the header only 2"),
    ("source,diagnose\n  ,Grippe\n", "line 2, field 'source': row 1: empty source text"),
    ("source,diagnose,diagnose\nA,B,C\n", "repeated column name(s) diagnose"),
    ('source,diagnose\n"Ein Text,Grippe\n', "malformed CSV"),
])
def test_malformed_csv_names_the_file_the_line_and_the_problem(tmp_path: Path, content: str,
                                                                expected: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        extraction.load(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_undecodable_bytes_name_the_row_and_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, b"source,diagnose\nEin Text,Grippe\nZwei,An\xe4mie\n")  # Latin-1, not UTF-8
    expected = r"data\.csv, line 3, field 'diagnose': row 2: bytes that are not UTF-8"
    with pytest.raises(DataError, match=expected):
        extraction.load(path)


def test_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: cannot read"):
        extraction.load(tmp_path / "nope.csv")


def test_a_template_without_the_placeholder_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "Extrahiere die Diagnose aus {text}.\n", "prompt.txt")
    with pytest.raises(DataError, match=r"prompt\.txt: the prompt template has no \{source\} placeholder"):
        extraction.read_template(path)


def test_a_template_with_undecodable_bytes_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"Extrahiere\nf\xfcr {source}\n", "prompt.txt")
    with pytest.raises(DataError, match=r"prompt\.txt, line 2: bytes that are not UTF-8"):
        extraction.read_template(path)


SCHEMA = extraction.answer_model(FIELDS)
GOOD = {"diagnose": "Grippe", "medikation": "Oseltamivir 75 mg", "dosierung": "1-0-1"}


@pytest.mark.parametrize("output", [
    json.dumps(GOOD),
    "Hier ist das Ergebnis:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nIch hoffe, das hilft.",
    "```\n" + json.dumps(GOOD) + "\n```",
    "Die Antwort lautet " + json.dumps(GOOD) + " - fertig.",
    '<think>Der Patient hat {Fieber}. Vielleicht {"diagnose": "Erkältung"}?</think>\n' + json.dumps(GOOD),
    'Okay, JSON then. {"diagnose": "x"}</think>' + json.dumps(GOOD),  # <think> was in the prompt
    json.dumps({**GOOD, "kommentar": "extra keys are ignored"}),
])
def test_parse_finds_the_answer_around_fences_prose_and_thinking(output: str) -> None:
    parsed = extraction.parse(output, SCHEMA)
    assert parsed.problem is None
    assert parsed.values == GOOD
    assert list(parsed.values) == FIELDS


@pytest.mark.parametrize(("output", "problem"), [
    ("Grippe, Oseltamivir, 1-0-1", "no JSON object in the output"),
    ('{"diagnose": "Grippe", "medikation": "Oseltamivir"', "no JSON object in the output"),  # cut off
    ('{"diagnose": "Grippe", "medikation": "Oseltamivir"}', "dosierung: Field required"),
    ('{"diagnose": ["Grippe"], "medikation": "x", "dosierung": "y"}',
     "diagnose: Input should be a valid string"),
    ('{"diagnose": null, "medikation": "x", "dosierung": "y"}', "diagnose: Input should be a valid string"),
    ("<think>Ich denke nach und " + json.dumps(GOOD), "thinking ran out of tokens"),  # never finished
    ('["Grippe", "x", "y"]', "no JSON object in the output"),
])
def test_parse_reports_invalid_output_without_raising(output: str, problem: str) -> None:
    parsed = extraction.parse(output, SCHEMA)
    assert parsed.values is None
    assert problem in str(parsed.problem)


def test_numbers_are_read_as_text_and_field_names_need_not_be_identifiers() -> None:
    schema = extraction.answer_model(["Haupt-Diagnose", "dosis mg"])
    parsed = extraction.parse('{"Haupt-Diagnose": "Gicht", "dosis mg": 500}', schema)
    assert parsed.values == {"Haupt-Diagnose": "Gicht", "dosis mg": "500"}


def test_score_is_exact_match_of_every_field_case_and_space_insensitive() -> None:
    item = extraction.load(SAMPLE / "sample.csv")[0]
    reference = json.loads(item.reference)
    right = extraction.score(item, {k: f"  {v.upper()} " for k, v in reference.items()})
    assert right.correct and right.scores == {"valid": 1.0, "exact_diagnose": 1.0,
                                              "exact_medikation": 1.0, "exact_dosierung": 1.0}
    one_off = extraction.score(item, {**reference, "dosierung": "1-0-0"})
    assert not one_off.correct and one_off.scores["exact_dosierung"] == 0.0
    assert one_off.scores["exact_diagnose"] == 1.0
    invalid = extraction.score(item, None)
    assert not invalid.correct and invalid.scores["valid"] == 0.0


def test_thinking_that_ran_out_of_tokens_says_so_with_the_limit() -> None:
    opened = extraction.parse("<think>Der Patient hat Fieber, also vielleicht", SCHEMA, finish_reason="length",
                              max_tokens=256)
    assert opened.values is None
    assert opened.problem == ("the model's thinking ran out of tokens (256) before its JSON: its <think> block "
                              "never closed; raise --extraction-max-tokens")
    # A finished <think> block with no JSON after it is a plain invalid answer.
    done = extraction.parse("<think>kurz</think>Keine Ahnung.", SCHEMA, finish_reason="stop")
    assert done.problem == "no JSON object in the output"
    # Cut at the limit with no thinking at all: the limit is named, not thinking.
    cut = extraction.parse('{"diagnose": "Grippe", "medi', SCHEMA, finish_reason="length", max_tokens=8)
    assert cut.problem == ("no JSON object in the output: it was cut at the token limit (8); "
                           "raise --extraction-max-tokens")
    assert extraction.thinking_ran_out("<think>a</think><think>b") is True
    assert extraction.thinking_ran_out("<think>a</think>{}") is False


def test_max_tokens_defaults_to_the_originals_1024() -> None:
    from harness.core.settings import defaults

    options = defaults(extraction.Options, "extraction")
    assert options.max_tokens == 1024 and options.bertscore_model is None
