from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.suites import mmlu
from harness.suites.base import DataError, Item

PROJECT = Path(__file__).resolve().parents[2]
SAMPLE = PROJECT / "fixtures" / "mmlu"
# The authors' dev and val CSVs, kept beside the project rather than inside it.
REAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mmlu"
SUBJECTS = ["astronomy", "high_school_computer_science", "nutrition", "world_religions"]
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"the MMLU CSVs are not at {REAL}")


def write_csv(folder: Path, name: str, rows: list[list[str]]) -> Path:
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path


def item(
    question: str = "Q?",
    choices: tuple[str, ...] = ("a", "b", "c", "d"),
    answer: str = "A",
    subject: str = "astronomy",
) -> Item:
    fields = {"subject": subject, "question": question, "choices": list(choices)}
    return Item(id=f"{subject}-0", input=fields, reference=answer)


# --- loading the sample ---------------------------------------------------------------------

def test_sample_test_split_has_all_subjects_in_order() -> None:
    items = mmlu.load(SAMPLE)
    assert len(items) == 32
    assert [i.input["subject"] for i in items[::8]] == SUBJECTS
    assert [i.id for i in items[:3]] == ["astronomy-0", "astronomy-1", "astronomy-2"]
    assert items[-1].id == "world_religions-7"
    assert len({i.id for i in items}) == 32
    assert {i.reference for i in items} == set("ABCD")
    assert sorted(i.reference for i in items).count("A") == 8


def test_sample_first_item_fields() -> None:
    first = mmlu.load(SAMPLE)[0]
    assert first.input == {
        "subject": "astronomy",
        "question": "Which planet in our solar system has the shortest orbital period around the Sun?",
        "choices": ["Venus", "Mercury", "Mars", "Earth"],
    }
    assert first.reference == "B"
    assert first.meta == {"file": str(SAMPLE / "test" / "astronomy_test.csv"), "line": 1}


def test_sample_quoting_commas_quotes_and_newlines() -> None:
    items = {i.id: i for i in mmlu.load(SAMPLE, subjects=["high_school_computer_science"])}
    code = items["high_school_computer_science-2"]
    assert code.input["question"] == (
        "What does the following Python code print?\n\nx = [1, 2, 3]\nprint(len(x) * 2)"
    )
    assert code.input["choices"][2] == "[1, 2, 3, 1, 2, 3]"
    assert code.meta["line"] == 3
    # The three-line question above shifts the lines of every later row.
    assert items["high_school_computer_science-3"].meta["line"] == 7
    quoted = items["high_school_computer_science-4"]
    assert quoted.input["question"] == 'What does the Python expression "abc"[-1] evaluate to?'
    assert quoted.input["choices"][:3] == ['"a"', '"b"', '"c"']
    assert quoted.reference == "C"


def test_sample_dev_split_and_flat_folder() -> None:
    dev = mmlu.load(SAMPLE, split="dev")
    assert len(dev) == 20
    assert dev[0].id == "astronomy-0" and dev[0].reference == "B"
    # A flat folder of <subject>_<split>.csv files reads the same as the authors' layout.
    flat = mmlu.load(SAMPLE / "dev", split="dev")
    assert [(i.id, i.input, i.reference) for i in flat] == [(i.id, i.input, i.reference) for i in dev]


def test_per_subject_keeps_first_rows() -> None:
    items = mmlu.load(SAMPLE, per_subject=2)
    assert [i.id for i in items] == [f"{s}-{n}" for s in SUBJECTS for n in (0, 1)]


def test_subject_filter_keeps_alphabetical_order() -> None:
    items = mmlu.load(SAMPLE, subjects=["world_religions", "nutrition"])
    assert [i.input["subject"] for i in items] == ["nutrition"] * 8 + ["world_religions"] * 8
    assert [i.id for i in mmlu.load(SAMPLE, subjects="nutrition")][:1] == ["nutrition-0"]


def test_unknown_subject_lists_available() -> None:
    with pytest.raises(DataError) as error:
        mmlu.load(SAMPLE, subjects=["nutrition", "astrology"])
    message = str(error.value)
    assert "astrology" in message and "'test'" in message
    assert "available: astronomy, high_school_computer_science, nutrition, world_religions" in message


def test_samples_are_seeded_and_in_order() -> None:
    first = [i.id for i in mmlu.load(SAMPLE, samples=10, seed=1)]
    again = [i.id for i in mmlu.load(SAMPLE, samples=10, seed=1)]
    other = [i.id for i in mmlu.load(SAMPLE, samples=10, seed=2)]
    everything = [i.id for i in mmlu.load(SAMPLE)]
    assert len(first) == 10 and first == again
    assert other != first
    assert first == [i for i in everything if i in first]  # original order kept
    assert len(mmlu.load(SAMPLE, samples=100)) == 32


def test_per_subject_then_samples() -> None:
    items = mmlu.load(SAMPLE, per_subject=3, samples=5, seed=0)
    assert len(items) == 5
    assert all(int(i.id.rsplit("-", 1)[1]) < 3 for i in items)


def test_few_shot_reads_dev() -> None:
    shots = mmlu.few_shot(SAMPLE, "nutrition", 2)
    assert [s.id for s in shots] == ["nutrition-0", "nutrition-1"]
    assert shots[0].input["question"] == "Which vitamin is needed for normal blood clotting?"
    assert [s.reference for s in shots] == ["C", "A"]
    assert mmlu.few_shot(SAMPLE, "nutrition", 0) == []


def test_few_shot_errors(tmp_path: Path) -> None:
    write_csv(tmp_path, "nutrition_test.csv", [["Q?", "a", "b", "c", "d", "A"]])
    with pytest.raises(DataError, match="no \\*_dev.csv files"):
        mmlu.few_shot(tmp_path, "nutrition", 1)
    assert mmlu.few_shot(tmp_path, "nutrition", 0) == []
    with pytest.raises(DataError, match="astrology not in split 'dev'"):
        mmlu.few_shot(SAMPLE, "astrology", 1)
    with pytest.raises(DataError, match="asked for 6 shots of 'astronomy', split 'dev' has 5"):
        mmlu.few_shot(SAMPLE, "astronomy", 6)


# --- the authors' data, beside the project ---------------------------------------------------

@needs_real
def test_real_dev_split() -> None:
    items = mmlu.load(REAL, split="dev")
    assert len(items) == 285
    assert len({i.input["subject"] for i in items}) == 57
    assert len({i.id for i in items}) == 285
    assert all(i.reference in mmlu.LETTERS and len(i.input["choices"]) == 4 for i in items)
    astronomy = mmlu.few_shot(REAL, "astronomy", 5)
    assert astronomy[0].input["question"].startswith("You are pushing a truck along a road.")
    assert astronomy[0].input["choices"][3] == "It would be the same no matter where you are."
    assert astronomy[0].reference == "D"


@needs_real
def test_real_val_split() -> None:
    items = mmlu.load(REAL, split="val")
    assert len(items) == 1531
    first = items[0]
    assert first.id == "abstract_algebra-0"
    assert first.input["question"] == "The cyclic subgroup of Z_24 generated by 18 has order"
    assert first.input["choices"] == ["4", "8", "12", "6"]
    assert first.reference == "A"
    assert first.meta["line"] == 1


# --- malformed input: file, line and field in every message -----------------------------------

GOOD = ["Fine question?", "a", "b", "c", "d", "B"]


@pytest.mark.parametrize(
    ("bad_row", "field", "problem"),
    [
        (["Q?", "a", "b", "c", "A"], None, "expected 6 columns"),
        (["Q?", "a", "b", "c", "d", "A", "extra"], None, "found 7"),
        (["  ", "a", "b", "c", "d", "A"], "question", "empty question"),
        (["Q?", "a", "b", "c", "d", "E"], "answer", "'E' is not one of A, B, C, D"),
        (["Q?", "a", "b", "c", "d", ""], "answer", "'' is not one of"),
        (["Q?", "a", "b", "c", "d", "1"], "answer", "'1' is not one of"),
    ],
)
def test_malformed_row(tmp_path: Path, bad_row: list[str], field: str | None, problem: str) -> None:
    path = write_csv(tmp_path, "astronomy_test.csv", [GOOD, ["Two\nlines?", *GOOD[1:]], bad_row])
    with pytest.raises(DataError) as error:
        mmlu.load(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{path}, line 4")  # row 3 starts on line 4: row 2 spans two
    assert problem in message
    assert error.value.line == 4 and error.value.field == field
    if field:
        assert f"field {field!r}" in message


def test_undecodable_bytes_name_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "nutrition_test.csv"
    path.write_bytes(b"Q one?,a,b,c,d,A\nQ two?,a,caf\xe9,c,d,B\n")
    with pytest.raises(DataError) as error:
        mmlu.load(tmp_path)
    assert str(error.value) == f"{path}, line 2, field 'B': bytes that are not UTF-8"


def test_unclosed_quote_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nutrition_test.csv"
    path.write_text('Q one?,a,b,c,d,A\n"Q two?,a,b,c,d,B\nQ three?,a,b,c,d,C\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"nutrition_test\.csv, line 2: malformed CSV"):
        mmlu.load(tmp_path)


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "nutrition_test.csv"
    path.write_bytes(b"\xef\xbb\xbfQ one?,a,b,c,d,A\r\n\r\nQ two?,a,b,c,d, C \r\n")
    items = mmlu.load(tmp_path)
    assert [(i.id, i.input["question"], i.reference, i.meta["line"]) for i in items] == [
        ("nutrition-0", "Q one?", "A", 1),
        ("nutrition-1", "Q two?", "C", 3),
    ]


def test_missing_folder_and_missing_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        mmlu.load(tmp_path / "nowhere")
    write_csv(tmp_path, "nutrition_dev.csv", [GOOD])
    with pytest.raises(DataError) as error:
        mmlu.load(tmp_path, split="test")
    assert str(error.value) == f"{tmp_path}: no *_test.csv files for split 'test'"


def test_subject_name_must_be_id_safe(tmp_path: Path) -> None:
    write_csv(tmp_path, "space travel_test.csv", [GOOD])
    with pytest.raises(DataError, match="'space travel' must be letters, digits and underscores"):
        mmlu.load(tmp_path)


def test_filtered_out_subjects_are_not_read(tmp_path: Path) -> None:
    write_csv(tmp_path, "broken_test.csv", [["only", "three", "columns"]])
    write_csv(tmp_path, "fine_test.csv", [GOOD])
    assert [i.id for i in mmlu.load(tmp_path, subjects=["fine"])] == ["fine-0"]
    with pytest.raises(DataError, match="broken_test.csv, line 1"):
        mmlu.load(tmp_path)


# --- prompts ----------------------------------------------------------------------------------

def test_zero_shot_prompt_is_exact() -> None:
    question = item(" Which is largest? ", (" Moon", "Sun ", "Earth", "Mars"), subject="high_school_physics")
    assert mmlu.prompt(question) == (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Which is largest?\nA. Moon\nB. Sun\nC. Earth\nD. Mars\nAnswer:"
    )


def test_one_shot_prompt_is_exact() -> None:
    shot = item("What is 1 + 1?", ("1", "2", "3", "4"), answer="B")
    question = item("What is 2 + 2?", ("4", "5", "6", "7"), answer="A")
    assert mmlu.prompt(question, [shot]) == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 2 + 2?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:"
    )


def test_prompt_from_sample_few_shot() -> None:
    shots = mmlu.few_shot(SAMPLE, "astronomy", 1)
    text = mmlu.prompt(mmlu.load(SAMPLE, subjects=["astronomy"])[0], shots)
    assert text.count("Answer:") == 2
    shot = "Which planet is closest to Earth in size?\nA. Mars\nB. Venus\nC. Mercury\nD. Neptune\n"
    shot += "Answer: B\n\n"
    assert shot in text
    assert text.endswith("D. Earth\nAnswer:")


def test_chat_prompt_ends_with_instruction() -> None:
    shot = item("What is 1 + 1?", ("1", "2", "3", "4"), answer="B")
    text = mmlu.prompt(item("What is 2 + 2?", ("4", "5", "6", "7")), [shot], style="chat")
    assert text == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What is 1 + 1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
        "What is 2 + 2?\nA. 4\nB. 5\nC. 6\nD. 7\n"
        "Answer with the letter of the correct option (A, B, C or D) only."
    )
    with pytest.raises(ValueError, match="unknown prompt style 'fancy'"):
        mmlu.prompt(item(), style="fancy")


def test_continuations_follow_answer_colon() -> None:
    assert mmlu.LETTERS == ("A", "B", "C", "D")
    assert mmlu.CONTINUATIONS == (" A", " B", " C", " D")


# --- answer extraction ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        (" B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("[C]", "C"),
        ("B) because it is", "B"),
        ("D: the resurrection", "D"),
        ("A. cat", "A"),
        ("C\nBecause the others are wrong.", "C"),
        ("**C**", "C"),
        ("**D** because the others are wrong", "D"),
        ("Answer: C", "C"),
        ("answer: d", "D"),
        ("**Answer:** B", "B"),
        ("The answer is D", "D"),
        ("The answer is: (B).", "B"),
        ("answer is (A)", "A"),
        ("the answer is c", "C"),
        ("I think the answer is b.", "B"),
        ("The correct answer is **C**, the event horizon.", "C"),
        ("The answer is option B", "B"),
        ("Let me think. A cat is small. The answer is C.", "C"),
        ("The answer is A... no wait, the answer is B.", "B"),  # the last explicit answer wins
        ("B. Vitamin C is the best source.", "B"),  # a leading letter beats a later mention
        ("Considering everything, C is correct.", "C"),
        ("Not B; C is correct.", "C"),  # a claim beats a bare mention
        ("(B) because C.", "B"),
        ("I'd pick C.", "C"),
        ("It has to be (D) here", "D"),
        ("Mercury has the shortest year, so B", "B"),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert mmlu.extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "I don't know",
        "A cat is sitting on the mat",
        "A planet orbits a star",
        "Dogs and cats",
        "The answer is a bit unclear",
        "the answer is d because",
        "E.",
        "Answer: E",
        "Answer: Both are wrong",
        "The answer is Dogs.",
        "None of the options are right",
        "Bees make honey",
        "It's a",
    ],
)
def test_extract_answer_finds_nothing(text: str) -> None:
    assert mmlu.extract_answer(text) is None


# --- scoring ----------------------------------------------------------------------------------

def test_score() -> None:
    question = item(answer="C")
    right, wrong, missing = mmlu.score(question, "C"), mmlu.score(question, "A"), mmlu.score(question, None)
    assert right.correct and right.scores == {"accuracy": 1.0}
    assert not wrong.correct and wrong.scores == {"accuracy": 0.0}
    assert not missing.correct and missing.scores == {"accuracy": 0.0}
    assert not mmlu.score(question, "c").correct  # extract_answer normalises; score compares exactly


# --- subject presets (issue 25) ---------------------------------------------------------------

def test_category_presets_split_the_57_subjects_without_overlap() -> None:
    from harness.suites import mmlu_subjects as ms

    groups = [ms.PRESETS[name] for name in ("stem", "humanities", "social", "other")]
    assert [len(g) for g in groups] == [18, 13, 12, 14]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == len(ms.ALL_SUBJECTS) == 57
    assert ms.category("abstract_algebra") == "stem" and ms.category("anatomy") == "other"
    assert ms.category("professional_law") == "humanities" and ms.category("econometrics") == "social"
    assert ms.category("nope") is None
    assert ms.PRESETS["baseline"] == ("abstract_algebra", "anatomy")
    assert len(ms.PRESETS["extended"]) == 10
    assert {ms.category(s) for s in ms.PRESETS["extended"]} == {"stem", "humanities", "social", "other"}


def test_presets_and_names_expand_once_in_order() -> None:
    from harness.suites import mmlu_subjects as ms

    assert ms.expand(["baseline"]) == ("abstract_algebra", "anatomy")
    assert ms.expand(["astronomy", "baseline", "anatomy"]) == ("astronomy", "abstract_algebra", "anatomy")
    assert ms.expand(["social"])[:2] == ("econometrics", "high_school_geography")


@needs_real
def test_every_preset_names_subjects_of_the_real_data() -> None:
    from harness.suites import mmlu_subjects as ms

    real = {p.name.removesuffix("_val.csv") for p in (REAL / "val").glob("*_val.csv")}
    assert set(ms.ALL_SUBJECTS) == real
    items = mmlu.load(REAL, split="val", subjects=ms.expand(["baseline"]))
    assert {i.input["subject"] for i in items} == {"abstract_algebra", "anatomy"}
    assert len(items) == 11 + 14  # the authors' val split: 11 abstract algebra, 14 anatomy questions


def test_shown_line_has_question_answer_reference_and_verdict() -> None:
    question = item("What is the largest planet? " + "x" * 200, answer="C")
    line = mmlu.shown(question, "B", width=40)
    assert line == "astronomy-0: What is the largest planet? xxxxxxxxx... | answer B, reference C: WRONG"
    assert mmlu.shown(item(answer="A"), "A").endswith("| answer A, reference A: right")
    assert mmlu.shown(item(answer="A"), None).endswith("| answer (no letter), reference A: WRONG")
