"""The cascade: the small model's variants first, the large model only when none passes.
Scripted models drive the control flow; the verdicts come from real sandboxed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import PROJECT, BenchRun

from harness.backends.scripted import ScriptedBackend
from harness.models.call import ModelCall
from harness.sandbox import Sandbox, SandboxError
from harness.strategies import cascade, code
from harness.suites import mbpp

ADD = mbpp.load(PROJECT / "fixtures" / "mbpp")[0]  # task 11: add(a, b)
WRONG = "def add(a, b):\n    return a - b"
RIGHT = "def add(a, b):\n    return a + b"


def scripted(name: str, steps: list[str]) -> ModelCall:
    backend = ScriptedBackend.from_steps(steps, name=name, then="error")
    return ModelCall(backend.spec, backend)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox()


def test_small_fails_twice_then_the_large_model_answers(sandbox: Sandbox) -> None:
    small = scripted("small", [WRONG, "[BEGIN]\ndef add(a, b):\n    return 0\n[DONE]"])
    large = scripted("large", [RIGHT])
    result = cascade.run(small, lambda: large, mbpp.task(ADD), sandbox, code.variants(2))
    assert (result.final_model, result.settled_by_small, result.escalated) == ("large", False, True)
    assert [(a.model, a.variant, a.outcome) for a in result.attempts] == [
        ("small", "greedy", "fail"), ("small", "t0.8-seed1", "fail"), ("large", "greedy", "pass")]
    assert result.attempts[0].detail == "line 4: assert add(1, 2) == 3"
    assert result.attempts[1].detail == "line 4: assert add(1, 2) == 3"
    # The variants reached the model: greedy first, then a seeded sample.
    assert [(r.temperature, r.seed) for r in small.backend.requests] == [(0.0, None), (0.8, 1)]
    per_model = result.per_model()
    assert per_model["small"]["attempts"] == 2 and per_model["large"]["attempts"] == 1
    assert per_model["small"]["completion_tokens"] > 0 and per_model["large"]["sandbox_s"] > 0
    extra = result.to_extra()
    assert extra["final_model"] == "large" and len(extra["attempts"]) == 3
    json.dumps(extra)  # it goes into the record as it is


def test_small_settles_and_the_large_model_is_never_loaded(sandbox: Sandbox) -> None:
    small = scripted("small", [WRONG, RIGHT])

    def never() -> ModelCall:
        raise AssertionError("the large model must not be asked")

    result = cascade.run(small, never, mbpp.task(ADD), sandbox, code.variants(3))
    assert (result.final_model, result.settled_by_small) == ("small", True)
    assert [a.passed for a in result.attempts] == [False, True]


def test_the_large_models_answer_is_final_even_when_wrong(sandbox: Sandbox) -> None:
    answer = code.answer(mbpp.task(ADD), scripted("small", [WRONG]), sandbox, strategy="cascade",
                         large=lambda: scripted("large", [WRONG]), cascade_variants=1)
    assert answer.score.correct is False and answer.mode == "cascade"
    assert (answer.extra["final_model"], answer.extra["settled_by_small"], answer.extra["outcome"]) == (
        "large", False, "fail")
    assert answer.extra["isolation"] == sandbox.isolation.describe()
    with pytest.raises(ValueError, match="at least one variant"):
        cascade.run(scripted("s", [RIGHT]), lambda: scripted("l", [RIGHT]), mbpp.task(ADD), sandbox, [])


def test_a_failing_sandbox_makes_the_case_an_error_not_a_wrong_answer() -> None:
    broken = Sandbox()
    broken.python = "/no/such/python"
    with pytest.raises(SandboxError, match="item 11: the sandbox failed"):
        code.answer(mbpp.task(ADD), scripted("small", [RIGHT]), broken)


def models_file(tmp_path: Path) -> Path:
    script = tmp_path / "wrong.json"
    script.write_text(json.dumps(["def nothing():\n    return None\n"]))
    path = tmp_path / "models.toml"
    path.write_text(f'[[models]]\nname = "tiny-scripted"\nbackend = "scripted"\nmodel = "script"\n'
                    f'tiers = ["test"]\noptions = {{ script = "{script}" }}\n')
    return path


def test_cascade_beside_small_only_and_large_only_end_to_end(bench: BenchRun, tmp_path: Path) -> None:
    registry = models_file(tmp_path)
    result = bench("--models-file", str(registry), "--models", "oracle", "--small-model", "tiny-scripted",
                   "--large-model", "oracle", "--samples", "2", "--run-id", "escalates", target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / "escalates")
    by_strategy: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        by_strategy.setdefault((rec["model"], rec["strategy"]), []).append(rec)
    # MBPP's pair strategies: the cascade and the delegation router, on the same items.
    assert sorted(by_strategy) == [("oracle", "single"), ("tiny-scripted", "single"),
                                   ("tiny-scripted+oracle", "cascade"), ("tiny-scripted+oracle", "delegate")]
    assert {r["item_id"] for r in records} == {r["item_id"] for r in by_strategy[("oracle", "single")]}
    assert all(r["status"] == "wrong" for r in by_strategy[("tiny-scripted", "single")])
    for rec in by_strategy[("tiny-scripted+oracle", "cascade")]:
        assert rec["status"] == "ok" and rec["extra"]["final_model"] == "oracle"
        assert rec["settled_by_small"] is False
        assert [a["model"] for a in rec["tries"]] == ["tiny-scripted", "tiny-scripted", "oracle"]
        assert rec["attempts"] == 3  # model calls, counted by the plugin
        assert rec["per_model"]["tiny-scripted"]["calls"] == 2
        # the transcript: each try's prompt and answer, in order
        said = [m for m in rec["transcript"]["messages"] if m["role"] == "assistant"]
        assert [m["model"] for m in said] == ["tiny-scripted", "tiny-scripted", "oracle"]
        assert len(rec["transcript"]["messages"]) == 6 and rec["transcript"]["final"] is not None
    rows = {(r["model"], r["strategy"]): r for r in bench.summary(bench.reports / "escalates")["summary"]}
    assert rows[("tiny-scripted", "single")]["accuracy"] == 0.0 and rows[("oracle", "single")]["accuracy"] == 1.0
    assert rows[("tiny-scripted+oracle", "cascade")]["accuracy"] == 1.0
    assert rows[("tiny-scripted+oracle", "cascade")]["settled_by_small"] == 0.0
    assert rows[("oracle", "single")]["settled_by_small"] is None
    table = (bench.reports / "escalates" / "code.md").read_text()
    assert "| tiny-scripted+oracle | cascade | 2 | 0 | 1.000 |" in table and "| oracle | single | 2 |" in table

    # The other way round: the small model settles every item; the large one is never asked.
    result = bench("--models-file", str(registry), "--models", "oracle", "--small-model", "oracle",
                   "--large-model", "tiny-scripted", "--samples", "2", "--run-id", "settles", target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    cascades = [r for r in bench.records(bench.reports / "settles") if r["strategy"] == "cascade"]
    assert len(cascades) == 2
    assert all(r["settled_by_small"] and r["attempts"] == 1 and list(r["per_model"]) == ["oracle"]
               for r in cascades)
    rows = {(r["model"], r["strategy"]): r for r in bench.summary(bench.reports / "settles")["summary"]}
    assert rows[("oracle+tiny-scripted", "cascade")]["settled_by_small"] == 1.0
