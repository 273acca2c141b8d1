"""End-to-end runs of benchmarks/test_mbpp.py and test_humaneval.py (pytester subprocesses):
the oracle, pass@k sampling, hostile answers, the real MBPP files and the real small model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import BENCHMARKS, SHARED_DATA, BenchRun, requires_llamacpp

REAL_MBPP = SHARED_DATA / "mbpp"
SECRET = "sk-harness-e2e-secret-0815"
# Reference solutions of the real MBPP files that fail their own tests: task_id -> the reason.
# None in validation and train (checked with PYTHONHASHSEED 0 here and 1-4 by hand).
KNOWN_BAD: dict[int, str] = {}


def test_oracle_passes_every_sample_task_in_both_suites(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--run-id", "both", str(BENCHMARKS / "test_humaneval.py"),
                   target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = [r for r in bench.records(bench.reports / "both") if r["suite"] in ("mbpp", "humaneval")]
    assert sorted({r["suite"] for r in records}) == ["humaneval", "mbpp"]
    assert sum(r["suite"] == "mbpp" for r in records) == 8 and sum(r["suite"] == "humaneval" for r in records) == 5
    assert all(r["status"] == "ok" and r["extra"]["outcome"] == "pass" for r in records)
    rows = {r["suite"]: r for r in bench.summary(bench.reports / "both")["summary"] if r["model"] == "oracle"}
    assert rows["mbpp"]["accuracy"] == rows["humaneval"]["accuracy"] == 1.0
    metadata = json.loads((bench.reports / "both" / "metadata.json").read_text())
    assert metadata["sandbox"] == [records[0]["isolation"]]
    code = json.loads((bench.reports / "both" / "code.json").read_text())
    assert {(r["suite"], r["pass@1"]) for r in code["rows"]} == {("mbpp", 1.0), ("humaneval", 1.0)}


def test_code_samples_give_pass_at_k(bench: BenchRun) -> None:
    result = bench("--models", "oracle", "--code-samples", "3", "--humaneval-first", "2", target="test_humaneval.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 2
    for rec in records:
        assert rec["mode"] == "sample" and rec["attempts"] == 3
        assert rec["scores"] == {"pass@1": 1.0, "pass^1": 1.0, "pass@3": 1.0, "pass^3": 1.0}
        assert (rec["extra"]["samples"], rec["extra"]["passed"]) == (3, 3)


def hostile_script(tmp_path: Path) -> Path:
    """Eight answers, one per sample task, each an attack (task order: 11 to 18)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    answers = [
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))\n",
        "while True:\n    pass\n",
        "import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=2)\n",
        f"open({str(outside / 'escaped.txt')!r}, 'w').write('x')\nopen('/var/tmp/escaped-harness', 'w')\n",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)\n",
        "import os\nraise RuntimeError(repr(dict(os.environ)))\n",
        "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * (1 << 20))\n",
    ]
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(answers))
    return path


def test_hostile_answers_are_wrong_answers_and_the_run_goes_on(bench: BenchRun, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    registry = tmp_path / "models.toml"
    registry.write_text(f'[[models]]\nname = "attacker"\nbackend = "scripted"\nmodel = "script"\n'
                        f'options = {{ script = "{hostile_script(tmp_path)}" }}\n')
    result = bench("--models-file", str(registry), "--models", "attacker", "--code-timeout", "6",
                   target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = {r["item_id"]: r for r in bench.records()}
    assert len(records) == 8 and {r["status"] for r in records.values()} == {"wrong"}
    outcome = {item: (r["extra"]["outcome"], r["extra"]["detail"]) for item, r in records.items()}
    assert outcome["11"][0] in ("timeout", "crash")  # fork bomb
    assert outcome["12"][0] == "crash" and "MemoryError" in outcome["12"][1]
    assert outcome["13"][0] == "timeout"
    isolation = records["11"]["isolation"]
    if "no network" in isolation:
        assert "Network is unreachable" in outcome["14"][1]
    if "read-only" in isolation:
        assert outcome["15"][0] == "crash" and not (tmp_path / "outside" / "escaped.txt").exists()
    assert outcome["16"][0] == "crash"  # killed itself, not the harness
    assert outcome["17"][0] == "crash" and "HOME" in outcome["17"][1] and SECRET not in json.dumps(records)
    assert outcome["18"][0] == "crash" and "File too large" in outcome["18"][1]


@pytest.mark.skipif(not REAL_MBPP.is_dir(), reason="needs ../shared/datasets/mbpp")
@pytest.mark.parametrize(("split", "count"), [("validation", 90), ("train", 374)])
def test_oracle_on_the_real_mbpp_files(bench: BenchRun, split: str, count: int) -> None:
    # Two workers: the sandboxed programs are the cost, and they run side by side.
    result = bench("--models", "oracle", "--mbpp-data", str(REAL_MBPP), "--mbpp-split", split, "-n", "2",
                   target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == count
    failing = {int(r["item_id"]): r["extra"]["detail"] for r in records if r["status"] != "ok"}
    unexpected = {task: detail for task, detail in failing.items() if task not in KNOWN_BAD}
    assert unexpected == {}, "reference solutions failing their own tests:\n" + "\n".join(
        f"  task {task}: {detail}" for task, detail in sorted(unexpected.items()))


@pytest.mark.slow
@requires_llamacpp
def test_gemma_answers_mbpp_tasks_in_the_sandbox(bench: BenchRun) -> None:
    result = bench("--models", "gemma3-270m-q4", "--samples", "2", target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    assert len(records) == 2
    for rec in records:
        assert rec["model"] == "gemma3-270m-q4" and rec["status"] in ("ok", "wrong")
        assert rec["usage"]["prompt_tokens"] > 300 and rec["usage"]["completion_tokens"] > 0
        assert rec["usage"]["source"] == "tokenizer"
        assert rec["extra"]["outcome"] in ("pass", "fail", "crash", "timeout")
        assert rec["correct"] == (rec["extra"]["outcome"] == "pass")
    metadata = json.loads((bench.run_dirs()[-1] / "metadata.json").read_text())
    assert metadata["sandbox"] == [records[0]["isolation"]]
