"""Task files against the built-in suites they reproduce, item for item, and their errors.

The three example task files in tasks/ must ask what the built-in suites ask: the same items (ids,
references), the same prompts for base and chat models, and from the same model output the same
prediction and scores. Then both run end to end with test doubles and their records are compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import PROJECT, BenchRun

from harness.suites import extraction, gsm8k, mmlu
from harness.suites.task import Answer, Task
from harness.suites.taskfile import TaskError

TASKS = PROJECT / "tasks"
FIXTURES = PROJECT / "fixtures"
# Model outputs of every kind the extractors meet: right, wrong, wrapped, missing, malformed.
GENERATED = ["The answer is 27.", "#### 1,000", "I think 12 apples, so the answer is 3 + 4 = 7.", "no idea",
             "Answer: B", "(C) is correct", "B", "the answer is a bit unclear", "x2 and H2O", "$-5.50 total"]


def task(name: str) -> Task:
    return Task.from_file(TASKS / name)


def same_items(ours: list, theirs: list) -> None:
    assert [(i.id, i.reference) for i in ours] == [(i.id, i.reference) for i in theirs]


@pytest.mark.parametrize("shots", [0, 5])
def test_mmlu_task_asks_what_the_mmlu_suite_asks(shots: int) -> None:
    mine = task("mmlu_astronomy.toml")
    mine = Task(type(mine.spec)(**{**mine.spec.__dict__, "shots": shots}))
    theirs = mmlu.load(FIXTURES / "mmlu", split="test", subjects=["astronomy"])
    items = mine.items()
    same_items(items, theirs)
    assert len(items) == 8 and all(i.input["subject"] == "astronomy" for i in items)
    their_shots = mmlu.few_shot(FIXTURES / "mmlu", "astronomy", shots)
    for ours, item in zip(items, theirs):
        for style in ("base", "chat"):
            assert mine.prompt(ours, mine.shot_items(), style) == mmlu.prompt(item, their_shots, style)
        # the continuation the oracle scores as certain: " B" for B, as the benchmark's requests
        assert mine.continuation_of(ours) == " " + item.reference
        for letter in mmlu.LETTERS:
            assert mine.score(ours, Answer(letter)) == mmlu.score(item, letter)
    assert mine.spec.choices == mmlu.CONTINUATIONS and mine.spec.labels == mmlu.LETTERS


def test_gsm8k_task_asks_what_the_gsm8k_suite_asks() -> None:
    mine = task("gsm8k.yaml")
    theirs = gsm8k.load(FIXTURES / "gsm8k", split="test")
    items = mine.items()
    same_items(items, theirs)
    their_shots = gsm8k.few_shot(FIXTURES / "gsm8k", 2)  # the benchmark's default: 2, seed 0
    assert [s.input["question"] for s in mine.shot_items()] == [s.input["question"].strip() for s in their_shots]
    for ours, item in zip(items, theirs):
        assert mine.prompt(ours, mine.shot_items(), "base") == gsm8k.prompt(item, their_shots, "base")
        assert mine.prompt(ours, mine.shot_items(), "chat") == gsm8k.prompt(item, style="chat")
        for text in GENERATED + [f"The answer is {item.reference}."]:
            answer = mine.answer(text)
            assert answer.prediction == gsm8k.extract_answer(text)
            assert mine.score(ours, answer) == gsm8k.score(item, gsm8k.extract_answer(text))
    assert mine.spec.stop == gsm8k.STOP


def test_extraction_task_asks_what_the_extraction_suite_asks() -> None:
    mine = task("extraction.toml")
    theirs = extraction.load(FIXTURES / "extraction" / "sample.csv")
    items = mine.items()
    same_items(items, theirs)
    template = extraction.read_template(FIXTURES / "extraction" / "prompt.txt")
    schema = extraction.answer_model(theirs[0].meta["fields"])
    for ours, item in zip(items, theirs):
        assert mine.prompt(ours, [], "base") == extraction.prompt(template, item)
        wrong = json.dumps({**json.loads(item.reference), "dosierung": "0-0-1"})
        for text in (item.reference, f"```json\n{item.reference}\n```", wrong, "{\"diagnose\": 1}", "none"):
            parsed = extraction.parse(text, schema)
            answer = mine.answer(text)
            assert answer.values == parsed.values and answer.problem == parsed.problem
            assert mine.score(ours, answer) == extraction.score(item, parsed.values)


def test_a_task_file_error_names_the_file_the_key_and_what_it_takes(tmp_path: Path) -> None:
    good = (TASKS / "mmlu_astronomy.toml").read_text().replace("../fixtures", str(FIXTURES))

    def error(text: str, suffix: str = ".toml") -> str:
        path = tmp_path / f"t{suffix}"
        path.write_text(text)
        with pytest.raises(TaskError) as caught:
            Task.from_file(path).items()
        assert str(caught.value).startswith(f"{path}: ")
        return str(caught.value)

    assert "mode.kind: 'guess' is not one of loglikelihood, generate" in error(good.replace(
        'kind = "loglikelihood"', 'kind = "guess"'))
    assert "data.colums: unknown key; data takes columns, constants" in error(good.replace("columns =", "colums ="))
    assert "prompt.template: {questoin} is not a field of the data; takes {field} placeholders of A, B" in error(
        good.replace("{shots}{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:\"\"\"",
                     "{shots}{questoin}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:\"\"\"", 1))
    assert "mode.labels: 3 labels for 4 choices" in error(good.replace('labels = ["A", "B", "C", "D"]',
                                                                         'labels = ["A", "B", "C"]'))
    assert "prompt.shots: -1: takes how many examples" in error(good.replace("shots = 0", "shots = -1"))
    assert "name: 'two words' is not the suite's name" in error(good.replace('"mmlu_astronomy"', '"two words"'))
    assert "(file): not valid YAML" in error("name: [unclosed", ".yaml")
    assert "answer.pattern: extract = \"regex\" needs" in error(good.replace('score = "exact"',
                                                                            'extract = "regex"\nscore = "exact"'))


def test_the_example_task_files_give_the_built_in_suites_records(bench: BenchRun) -> None:
    # One run: the built-in suites and the three task files, with the oracle (log-likelihood and
    # generation) and a scripted model whose fixed reply the two pipelines must read alike.
    registry = bench.pytester.path / "models.toml"
    registry.write_text('[[models]]\nname = "oracle"\nbackend = "oracle"\nmodel = "oracle"\n'
                        '[[models]]\nname = "fixed"\nbackend = "scripted"\nmodel = "fixed"\n'
                        'options = { steps = ["Let me see. The answer is 27. {\\"diagnose\\": \\"x\\"}"] }\n')
    result = bench.pytester.runpytest_subprocess(
        str(PROJECT / "benchmarks" / "test_mmlu.py"), str(PROJECT / "benchmarks" / "test_gsm8k.py"),
        str(PROJECT / "benchmarks" / "test_extraction.py"), str(PROJECT / "benchmarks" / "test_tasks.py"),
        "--task", str(TASKS), "--models", "oracle,fixed", "--models-file", str(registry),
        "--mmlu-subjects", "astronomy", "--report-dir", str(bench.reports), "--run-id", "tasks",
        "--no-extraction-metrics", "-p", "no:cacheprovider", "-k", "not (fixed and (mmlu or astronomy))")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "tasks")
    by_suite: dict[str, dict[tuple[str, str], dict]] = {}
    for r in records:
        by_suite.setdefault(r["suite"], {})[(r["model"], r["item_id"])] = r
    pairs = {"mmlu": "mmlu_astronomy", "gsm8k": "gsm8k_task", "extraction": "extraction_task"}
    for builtin, mine in pairs.items():
        theirs, ours = by_suite[builtin], by_suite[mine]
        assert set(theirs) == set(ours) and len(ours) >= 8
        for key, record in theirs.items():
            other = ours[key]
            assert (other["prediction"], other["scores"], other["correct"], other["status"]) == \
                (record["prediction"], record["scores"], record["correct"], record["status"]), key
    assert {r["tags"]["subject"] for r in by_suite["mmlu_astronomy"].values()} == {"astronomy"}
    # the scripted model's reply: gsm8k reads 27 (right on test-0 only); extraction finds invalid JSON
    assert sum(r["correct"] for (m, _), r in by_suite["gsm8k_task"].items() if m == "fixed") == 1
    assert {r["status"] for (m, _), r in by_suite["extraction_task"].items() if m == "fixed"} == {"invalid_output"}
    metadata = json.loads((bench.reports / "tasks" / "metadata.json").read_text())
    assert metadata["suites"]["mmlu_astronomy"]["tags"] == ["subject"]


def test_a_bad_task_file_stops_the_run_with_exit_4(bench: BenchRun) -> None:
    bad = bench.pytester.path / "bad.toml"
    bad.write_text('name = "bad"\n[data]\npath = "x.csv"\nreference = "a"\n[prompt]\ntemplate = "{a}"\n'
                   '[mode]\nkind = "generate"\nmax_tokens = 0\n')
    result = bench("--models", "oracle", "--task", str(bad), target="test_tasks.py")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"*{bad}: mode.max_tokens: 0: takes most tokens of an answer*"])


def test_task_files_run_under_xdist(bench: BenchRun) -> None:
    # Every worker registers the task files and must collect the same cases in the same order.
    result = bench("--models", "oracle", "--task", str(TASKS), "-n", "2", "--run-id", "x", target="test_tasks.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "x")
    assert len(records) == 24 and all(r["correct"] for r in records)
    assert {r["suite"] for r in records} == {"mmlu_astronomy", "gsm8k_task", "extraction_task"}


def test_hf_data_goes_through_the_datasets_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def load_dataset(name, config, split):  # the one call the task makes, recorded
        asked.append((name, config, split))
        return [{"q": "2+2?", "a": 4}, {"q": "3+3?", "a": 6}]

    monkeypatch.setitem(sys.modules, "datasets", type("datasets", (), {"load_dataset": load_dataset}))
    path = tmp_path / "sums.toml"
    path.write_text('name = "sums"\n[data]\npath = "hf:org/sums@easy:validation"\nreference = "a"\n'
                    '[prompt]\ntemplate = "{q}"\n[answer]\nextract = "number"\nscore = "numeric"\n')
    items = Task.from_file(path).items()
    assert asked == [("org/sums", "easy", "validation")]
    assert [(i.id, i.input["q"], i.reference) for i in items] == [("0", "2+2?", "4"), ("1", "3+3?", "6")]
