"""MBPP loading, splits, prompts and program assembly (the sample, files written here, real data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import PROJECT, SHARED_DATA

from harness.sandbox import Sandbox
from harness.suites import mbpp
from harness.suites.base import DataError

SAMPLE = PROJECT / "fixtures" / "mbpp"
REAL = SHARED_DATA / "mbpp"


def row(task_id: int, **changes: object) -> dict:
    base = {"text": f"Write a function number {task_id}.", "code": f"def f{task_id}():\r\n    return {task_id}",
            "task_id": task_id, "test_setup_code": "", "test_list": [f"assert f{task_id}() == {task_id}"],
            "challenge_test_list": []}
    return {**base, **changes}


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_sample_loads_eight_test_tasks_in_order() -> None:
    items = mbpp.load(SAMPLE)
    assert [i.id for i in items] == [str(n) for n in range(11, 19)]
    first = items[0]
    assert first.input["function"] == "add" and first.input["test_list"][0] == "assert add(1, 2) == 3"
    assert first.reference == "def add(a, b):\n    return a + b"
    assert "\r" not in items[5].reference  # Windows line ends normalized
    assert [i.id for i in mbpp.load(SAMPLE, samples=3, seed=1)] == [i.id for i in mbpp.load(SAMPLE, samples=3, seed=1)]
    assert len(mbpp.load(SAMPLE, samples=3, seed=1)) == 3


def test_splits_go_by_task_id_in_one_combined_file(tmp_path: Path) -> None:
    path = write(tmp_path / "mbpp.jsonl", [row(n) for n in (3, 11, 510, 511, 600, 601, 974)])
    assert [i.id for i in mbpp.load(path, split="prompt")] == ["3"]
    assert [i.id for i in mbpp.load(path, split="test")] == ["11", "510"]
    assert [i.id for i in mbpp.load(path, split="validation")] == ["511", "600"]
    assert [i.id for i in mbpp.load(tmp_path, split="train")] == ["601", "974"]  # a folder of .jsonl
    with pytest.raises(ValueError, match="unknown MBPP split 'dev'"):
        mbpp.load(path, split="dev")


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", r"line 2: not a JSON line"),
    (row(12, test_list=[]), r"line 2, field 'test_list': no tests"),
    ({**row(12), "task_id": "12"}, r"line 2, field 'task_id': expected int, found str"),
    ({k: v for k, v in row(12).items() if k != "code"}, r"line 2, field 'code': missing"),
    (row(12, test_list=["assert f()", 3]), r"line 2, field 'test_list': expected a list of strings"),
    (row(11), r"line 2, field 'task_id': task_id 11 appears twice"),
])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, bad: object, message: str) -> None:
    path = write(tmp_path / "test.jsonl", [row(11), bad])
    with pytest.raises(DataError, match=message) as error:
        mbpp.load(path)
    assert str(path) in str(error.value)


def test_base_prompt_is_the_papers_with_three_shots() -> None:
    shots = mbpp.few_shot(SAMPLE)
    assert [s.input["task_id"] for s in shots] == [2, 3, 4]
    item = mbpp.load(SAMPLE)[1]
    text = mbpp.prompt(item, shots)
    assert text.startswith("You are an expert Python programmer, and here is your task: Write a function to "
                           "find the larger of two numbers. Your code should pass these tests:\n\n"
                           "assert larger(3, 7) == 7\n")
    assert text.count("[BEGIN]") == 4 and text.count("[DONE]") == 3
    assert text.endswith("Write a function to return the square of a number. Your code should pass these "
                         "tests:\n\nassert square(3) == 9\nassert square(-2) == 4\nassert square(0) == 0\n[BEGIN]\n")
    chat = mbpp.prompt(item, style="chat")
    assert "[BEGIN]" not in chat and "assert square(3) == 9" in chat and chat.endswith(mbpp.CHAT_INSTRUCTION)


def test_program_puts_setup_after_the_solution_and_before_the_tests() -> None:
    item = next(i for i in mbpp.load(SAMPLE) if i.id == "17")
    program = mbpp.program(item, item.reference)
    assert program.index("def distance") < program.index("Point = namedtuple") < program.index("assert distance")
    assert "Point(-6, 8)" not in program and "Point(-6, 8)" in mbpp.program(item, item.reference, challenge=True)
    task = mbpp.task(item)
    assert task.program("[BEGIN]\n" + item.reference + "\n[DONE]\nmore") == program


def test_every_sample_reference_passes_and_a_wrong_one_fails() -> None:
    sandbox = Sandbox()
    for item in mbpp.load(SAMPLE) + mbpp.load(SAMPLE, split="prompt"):
        result = sandbox.run(mbpp.program(item, item.reference, challenge=True))
        assert result.passed, (item.id, result.detail)
    item = mbpp.load(SAMPLE)[0]
    result = sandbox.run(mbpp.program(item, "def add(a, b):\n    return a - b"))
    assert (result.outcome, result.detail) == ("fail", "line 4: assert add(1, 2) == 3")


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/datasets/mbpp")
def test_real_files_load_by_split() -> None:
    assert len(mbpp.load(REAL, split="validation")) == 90
    assert len(mbpp.load(REAL, split="train")) == 374
    shots = mbpp.few_shot(REAL)
    assert [s.input["task_id"] for s in shots] == [2, 3, 4]
    assert shots[0].input["function"] == "similar_elements"


def test_hugging_face_configs_full_and_sanitized(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hf: path without the network: a stand-in `datasets` module answers load_dataset."""
    import sys
    import types

    asked: list[tuple[str, str, str]] = []
    sanitized_row = {"source_file": "x", "task_id": 12, "prompt": "Write a function number 12.",
                     "code": "import math\ndef f12():\n    return 12", "test_imports": ["import math"],
                     "test_list": ["assert f12() == 12"]}

    def load_dataset(name: str, config: str, split: str) -> list[dict]:
        asked.append((name, config, split))
        return [sanitized_row] if config == "sanitized" else [row(11), row(600)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert [i.id for i in mbpp.load("hf:mbpp")] == ["11"]
    [item] = mbpp.load("hf:google-research-datasets/mbpp@sanitized", split="test")
    assert asked == [("mbpp", "full", "test"), ("google-research-datasets/mbpp", "sanitized", "test")]
    assert item.input["text"] == "Write a function number 12." and item.input["test_setup_code"] == "import math"
    assert Sandbox().run(mbpp.program(item, item.reference)).passed
