"""GSM8K loading, answer extraction, numeric scoring and prompts (the sample, files written here,
the real train split)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from support import PROJECT, SHARED_DATA

from harness.suites import gsm8k
from harness.suites.base import DataError, Item

SAMPLE = PROJECT / "fixtures" / "gsm8k"
REAL = SHARED_DATA / "gsm8k"


def row(n: int = 7, **changes: object) -> dict:
    solution = f"{n} + 1 = <<{n}+1={n + 1}>>{n + 1}\n#### {n + 1}"
    return {"question": f"What is {n} plus 1?", "answer": solution, **changes}


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- the oracle property on the real data -------------------------------------------------------


@pytest.mark.skipif(not (REAL / "train.jsonl").is_file(), reason="needs ../shared/datasets/gsm8k/train.jsonl")
def test_every_reference_answer_of_the_real_train_split_scores_correct() -> None:
    items = gsm8k.load(REAL, split="train")
    assert len(items) == 7473
    failures = []
    for item in items:
        answer = gsm8k.extract_answer(item.meta["solution"])
        # The base-prompt rendering of the same solution ("The answer is N.") must read back too.
        rendered = gsm8k.extract_answer(gsm8k.worked_solution(item))
        if answer != item.reference or rendered != item.reference or not gsm8k.score(item, answer).correct:
            failures.append(f"{item.id} (line {item.meta['line']}): reference {item.reference!r}, "
                            f"extracted {answer!r}, from the worked solution {rendered!r}")
    assert not failures, f"{len(failures)} records fail:\n" + "\n".join(failures)
    by_id = {item.id: item for item in items}
    assert by_id["train-0"].reference == "72" and by_id["train-0"].meta["line"] == 1
    assert by_id["train-345"].reference == "1080"  # written "#### 1,080"
    assert by_id["train-5715"].reference == "-7"


# -- reading answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "expected"), [
    ("#### 72", "72"),
    ("#### 5.00", "5"),
    ("#### 1,000", "1000"),
    ("#### $1,234.50.", "1234.5"),
    ("She has 3 + 4 = 7 left.\n#### 7\n\nI hope 12 helps", "7"),  # "####" beats a later number
    ("first #### 3\nthen I fixed it #### 4", "4"),  # the last "####"
    ("#### \nThe answer is 9.", "9"),  # "####" without a number falls through
    ("The answer is $18.", "18"),
    ("The answer is -7.", "-7"),
    ("The answer is: **$18**.", "18"),
    ("Answer: 42 cookies", "42"),
    ("The final answer is \\boxed{36}", "36"),
    ("The answer is 12. Check: 12 + 3 = 15", "12"),  # the stated answer, not the last number
    ("The answer is 220 / 2.5 = 40 kilometers.", "40"),  # a stated calculation: its result
    ("The answer is 3 + 4 = 7.\nThen 7 + 1 = 8", "7"),
    ("The answer is 1,720 / 48 = 300.\nThe answer is $300.", "300"),  # gemma's own output
    ("The answer is 6 = six apples", "6"),  # no number after "=": the stated one
    ("The answer is 5. No wait, the answer is 6. So 6 + 1 = 7", "6"),  # the last stated answer
    ("The answer is unclear, but 8 + 2 = 10", "10"),  # no number after the phrase: the last number
    ("so 3 + 4 = 7 apples", "7"),
    ("It costs $1,234.50.", "1234.5"),
    ("The total is 1,000,000 grains", "1000000"),
    ("We had 1, 2, and 3 left", "3"),  # a list, not a thousands number
    ("The temperature is -3 degrees", "-3"),
    ("The temperature is \u22123 degrees", "-3"),  # Unicode minus
    ("She owes -$5", "-5"),
    ("10-3", "3"),  # a subtraction, not a negative number
    ("Each costs 2.50 dollars", "2.5"),
    ("She ran 5kg", "5"),
    ("He used .5 cups", "0.5"),
    ("The discount is 25%.", "25"),
    ("It holds 5 liters of H2O", "5"),  # "H2O": a number glued to a letter is not a number
    ("Multiply by x2", None),
    ("Since COVID-19 there were 4 shops", "4"),
    ("Natalia sold 24 clips in May.\nThe answer is 72.\n\nQuestion: Tom has 5 apples. The answer is 5.",
     "72"),
    ("She has 8 + 2 = 10 marbles.\n\nQ: How many legs do 3 cats have? 12", "10"),  # cut at "\n\nQ:"
    ("The answer is 3.\nQuestion: next one #### 99", "3"),  # a continuation's "####" is not read
    ("I cannot tell.", None),
    ("", None),
])
def test_extract_answer(output: str, expected: str | None) -> None:
    assert gsm8k.extract_answer(output) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("5", "5"), ("5.00", "5"), ("2.50", "2.5"), ("0.5", "0.5"), (".5", "0.5"), ("007", "7"),
    ("-3", "-3"), ("\u22123", "-3"), ("-0", "0"), ("-0.0", "0"), ("+4", "4"),
    ("$1,000", "1000"), ("€12.30", "12.3"), ("£7", "7"), ("-$5", "-5"), ("$-5", "-5"),
    ("1,000,000", "1000000"), ("12%", "12"), ("72.", "72"), ("  18  ", "18"), ("**18**", "18"),
    ("7 apples.", "7"), ("12 dollars per hour", "12"), ("15 km/h", "15"), ("5kg", "5"),
    ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("abc", None), ("", None), ("1 2", None), ("7 apples and 3 pears", None), ("1,00", None),
    ("-$-5", None), ("1/2", None), ("five", None), ("1.2.3", None),
])
def test_normalize_number(text: str, expected: str | None) -> None:
    assert gsm8k.normalize_number(text) == expected


def test_score_compares_numbers_exactly() -> None:
    item = Item(id="test-0", input={"question": "?"}, reference="1000")
    assert gsm8k.score(item, "1000").correct
    assert gsm8k.score(item, "1,000.00").correct  # same number, other spelling
    assert gsm8k.score(item, "1000").scores == {"accuracy": 1.0}
    for wrong in ("1001", "999.99", "-1000", "10000", None, "a thousand"):
        result = gsm8k.score(item, wrong)
        assert not result.correct and result.scores == {"accuracy": 0.0}, wrong
    half = Item(id="test-1", input={"question": "?"}, reference="2.5")
    assert gsm8k.score(half, "2.50").correct and not gsm8k.score(half, "2.49").correct


# -- loading ------------------------------------------------------------------------------------


def test_sample_loads_eight_problems_with_normalized_references() -> None:
    items = gsm8k.load(SAMPLE)
    assert [i.id for i in items] == [f"test-{n}" for n in range(8)]
    assert [i.reference for i in items] == ["27", "3.5", "13450", "-11", "67", "120", "210", "55"]
    first = items[0]
    assert first.input == {"question": "Maya buys 3 packs of markers with 12 markers in each pack. She gives "
                                       "9 markers to her brother. How many markers does Maya have left?"}
    assert first.meta == {"file": str(SAMPLE / "test.jsonl"), "line": 1,
                          "solution": "Maya buys 3 x 12 = <<3*12=36>>36 markers.\nAfter giving some away "
                                      "she has 36 - 9 = <<36-9=27>>27 markers.\n#### 27"}
    assert [i.id for i in gsm8k.load(SAMPLE, split="train")] == ["train-0", "train-1", "train-2", "train-3"]
    # The sample's own reference answers read back as correct.
    for item in items + gsm8k.load(SAMPLE, split="train"):
        assert gsm8k.score(item, gsm8k.extract_answer(item.meta["solution"])).correct, item.id


def test_samples_and_seed_pick_the_same_items_in_file_order() -> None:
    picked = [i.id for i in gsm8k.load(SAMPLE, samples=3, seed=1)]
    assert picked == [i.id for i in gsm8k.load(SAMPLE, samples=3, seed=1)]
    assert len(picked) == 3 and picked == sorted(picked, key=lambda i: int(i.split("-")[1]))
    seeds = {tuple(i.id for i in gsm8k.load(SAMPLE, samples=3, seed=s)) for s in range(6)}
    assert len(seeds) > 1  # the seed matters
    assert len(gsm8k.load(SAMPLE, samples=100)) == 8


def test_a_single_file_takes_the_split_as_id_prefix_and_ids_count_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.jsonl", [row(1), "", row(2)])  # a blank line keeps its number
    items = gsm8k.load(path, split="dev")
    assert [(i.id, i.meta["line"], i.reference) for i in items] == [("dev-0", 1, "2"), ("dev-2", 3, "3")]
    with pytest.raises(ValueError, match="split 'my split' must be letters"):
        gsm8k.load(path, split="my split")


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", r"line 2: not a JSON line"),
    ("[1, 2]", r"line 2: expected a JSON object, found list"),
    ({"answer": "#### 3"}, r"line 2, field 'question': missing"),
    ({"question": "Why?"}, r"line 2, field 'answer': missing"),
    (row(question=3), r"line 2, field 'question': expected a string, found int"),
    (row(question="  "), r"line 2, field 'question': empty"),
    (row(answer="It is 3."), r"line 2, field 'answer': no '#### N' final answer"),
    (row(answer="It is three.\n#### three"),
     r"line 2, field 'answer': final answer 'three' after '####' is not a number"),
    (row(answer="#### "), r"line 2, field 'answer': final answer '' after '####' is not a number"),
])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, bad: object, message: str) -> None:
    path = write(tmp_path / "test.jsonl", [row(), bad])
    with pytest.raises(DataError, match=message) as error:
        gsm8k.load(tmp_path)
    assert str(error.value).startswith(str(path))


def test_undecodable_bytes_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_bytes(json.dumps(row()).encode() + b"\n" + b'{"question": "caf\xe9?", "answer": "#### 1"}\n')
    with pytest.raises(DataError, match=r"test\.jsonl, line 2: bytes that are not UTF-8 at column 18"):
        gsm8k.load(path)
    bom = write(tmp_path / "bom.jsonl", [row()])
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())  # a byte-order mark is not an error
    assert gsm8k.load(bom)[0].reference == "8"


def test_missing_data_says_what_is_there(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such file or folder"):
        gsm8k.load(tmp_path / "nowhere")
    write(tmp_path / "train.jsonl", [row()])
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match=r"no test\.jsonl for split 'test'; split files here: train\.jsonl$"):
        gsm8k.load(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no val\.jsonl for split 'val'; split files here: none"):
        gsm8k.load(tmp_path / "empty", split="val")
    empty = tmp_path / "blank.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"blank\.jsonl: no items in split 'test'"):
        gsm8k.load(empty)


def test_hugging_face_source_reads_gsm8k_main(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple] = []

    def load_dataset(name: str, config: str, split: str) -> list[dict]:
        asked.append((name, config, split))
        return [row(4), row(9, answer="9 * 2 = <<9*2=18>>18\n#### 18")]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    items = gsm8k.load("hf:gsm8k")
    assert asked == [("gsm8k", "main", "test")]
    assert [(i.id, i.reference) for i in items] == [("test-0", "5"), ("test-1", "18")]
    assert items[1].meta == {"file": "hf:gsm8k", "line": None, "index": 1,
                             "solution": "9 * 2 = <<9*2=18>>18\n#### 18"}
    gsm8k.load("hf:openai/gsm8k@socratic", split="train")
    assert asked[-1] == ("openai/gsm8k", "socratic", "train")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(
        load_dataset=lambda *a, **k: [row(), {"question": "?", "answer": "none"}]))
    with pytest.raises(DataError, match=r"hf:gsm8k test row 1, field 'answer': no '#### N'"):
        gsm8k.load("hf:gsm8k")


# -- shots and prompts --------------------------------------------------------------------------


def test_few_shot_comes_from_the_train_file_of_a_folder(tmp_path: Path) -> None:
    shots = gsm8k.few_shot(SAMPLE, 2)
    assert len(shots) == 2 and all(s.id.startswith("train-") for s in shots)
    assert [s.id for s in shots] == [s.id for s in gsm8k.few_shot(SAMPLE, 2, seed=0)]
    assert [s.id for s in gsm8k.few_shot(SAMPLE, 4)] == ["train-0", "train-1", "train-2", "train-3"]
    assert gsm8k.few_shot(SAMPLE, 0) == []
    # A single file has no other split: its first k items.
    assert [s.id for s in gsm8k.few_shot(SAMPLE / "test.jsonl", 3)] == ["test-0", "test-1", "test-2"]
    with pytest.raises(DataError, match=r"asked for 5 shots, found 4"):
        gsm8k.few_shot(SAMPLE, 5)
    write(tmp_path / "test.jsonl", [row()])
    with pytest.raises(DataError, match=r"no train\.jsonl for split 'train'; split files here: test\.jsonl"):
        gsm8k.few_shot(tmp_path, 1)


def test_worked_solution_drops_annotations_and_states_the_answer() -> None:
    muffins = gsm8k.load(SAMPLE)[1]
    assert gsm8k.worked_solution(muffins) == ("The muffins cost 6 x $2.75 = $16.50.\n"
                                              "Leo gets $20 - $16.50 = $3.50 in change.\nThe answer is 3.5.")


def test_base_prompt_without_and_with_a_shot() -> None:
    item = gsm8k.load(SAMPLE)[6]
    assert gsm8k.prompt(item) == ("Question: A train travels at 84 kilometers per hour for 2.5 hours. "
                                  "How many kilometers does it travel?\nAnswer:")
    shot = gsm8k.load(SAMPLE, split="train")[1]
    assert gsm8k.prompt(item, [shot]) == (
        "Question: A farmer collects 36 eggs every day. How many dozen eggs does he collect in one week?\n"
        "Answer: In a week he collects 36 x 7 = 252 eggs.\nThat is 252 / 12 = 21 dozen.\n"
        "The answer is 21.\n\n"
        "Question: A train travels at 84 kilometers per hour for 2.5 hours. "
        "How many kilometers does it travel?\nAnswer:"
    )
    # A base model that goes on past its answer is cut by the stop sequences.
    continued = "It travels 210 km.\nThe answer is 210.\n\nQuestion: another"
    assert min(continued.find(s) for s in gsm8k.STOP if s in continued) == continued.index("\n\nQuestion")


def test_chat_prompt_is_a_plain_instruction_then_the_question() -> None:
    item = gsm8k.load(SAMPLE)[6]
    assert gsm8k.prompt(item, style="chat") == (
        "Solve the problem. Show your reasoning briefly, then give the final line as 'The answer is N.'\n\n"
        "Question: A train travels at 84 kilometers per hour for 2.5 hours. "
        "How many kilometers does it travel?"
    )
    with_shot = gsm8k.prompt(item, gsm8k.load(SAMPLE, split="train")[:1], style="chat")
    assert with_shot.startswith(gsm8k.CHAT_INSTRUCTION + "\n\nQuestion: Oliver has 4 boxes")
    assert "The answer is 57.\n\nQuestion: A train travels" in with_shot and not with_shot.endswith("Answer:")
    with pytest.raises(ValueError, match="unknown prompt style 'instruct'"):
        gsm8k.prompt(item, style="instruct")
