"""tool_choice and typed tool calls across the harness, with scripted models: the delegation
router on MBPP (the large model hands the task to the small one, and its final code runs against
the task's tests), --router-tool-choice validated and applied to the first turn, and ToolCall
values surviving the response cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import BenchRun

ADD = "def add(a, b):\n    return a + b"  # fixtures/mbpp task 11


def scripted(tmp: Path, name: str, steps: list[Any]) -> str:
    script = tmp / f"{name}.json"
    script.write_text(json.dumps(steps))
    return f'[[models]]\nname = "{name}"\nbackend = "scripted"\nmodel = "script"\noptions = {{ script = "{script}" }}\n'


def test_mbpp_router_delegates_and_runs_the_final_code(bench: BenchRun) -> None:
    tmp = bench.pytester.path
    call = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "Write add(a, b)."}}]}
    registry = tmp / "scripted.toml"
    registry.write_text(scripted(tmp, "small", [f"```python\n{ADD}\n```"])
                        + scripted(tmp, "large", [call, f"It checks out.\n```python\n{ADD}\n```"]))
    result = bench("--models-file", str(registry), "--models", "small", "--small-model", "small",
                   "--large-model", "large", "-k", "delegate and 11", "--router-tool-choice", "required",
                   "--run-id", "mbpp-router", target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    [routed] = bench.records(bench.reports / "mbpp-router")
    assert (routed["strategy"], routed["model"], routed["status"]) == ("delegate", "small+large", "ok")
    extra = routed["extra"]
    assert len(routed["tool_calls"]) == 1 and routed["turns"] == 2 and routed["stopped"] == "answer"
    assert extra["tool_choice"] == "required" and extra["outcome"] == "pass"
    assert routed["tool_calls"][0]["arguments"] == json.dumps({"task": "Write add(a, b)."})
    assert "def add" in extra["small_answers"][0] and "def add" in routed["prediction"]


@pytest.mark.parametrize("value, ok", [("auto", True), ("required", True), ("always", False)])
def test_router_tool_choice_is_validated(bench: BenchRun, value: str, ok: bool) -> None:
    result = bench("--models", "oracle", "--router-tool-choice", value, "--collect-only", "-q",
                   target="test_gsm8k.py")
    if ok:
        assert result.ret == 0, result.stdout.str()
    else:
        assert result.ret == 4 and "--router-tool-choice takes auto or required" in result.stderr.str()


def test_required_applies_to_the_first_turn_and_the_suite_gives_the_instructions() -> None:
    from harness.backends.scripted import ScriptedBackend
    from harness.models.call import ModelCall
    from harness.strategies.delegate import route
    from harness.suites import gsm8k, mbpp

    large = ScriptedBackend.from_steps([{"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "t"}}]},
                                        "done"], name="large")
    small = ScriptedBackend.from_steps(["42"], name="small")
    result = route(ModelCall(large.spec, large), ModelCall(small.spec, small), "q", small_prompt=str,
                   system=mbpp.router_instructions(), tool_choice="required")
    assert [r.tool_choice for r in large.requests] == ["required", "auto"]
    assert large.requests[0].messages[0] == {"role": "system", "content": mbpp.router_instructions()}
    assert result.to_extra()["tool_choice"] == "required" and result.small_answers == ["42"]
    assert "Python" in mbpp.router_instructions() and "The answer is N." in gsm8k.router_instructions()


def test_cached_tool_calls_come_back_typed(tmp_path: Path) -> None:
    from harness.backends.base import Request, ToolCall
    from harness.backends.scripted import ScriptedBackend
    from harness.models.cache import ResponseCache
    from harness.models.call import CallPolicy, ModelCall

    backend = ScriptedBackend.from_steps([{"tool_calls": [{"name": "ask_small_model", "arguments": "{oops"}]}])
    model = ModelCall(backend.spec, backend, CallPolicy(cache=ResponseCache(tmp_path)))
    request = Request(messages=({"role": "user", "content": "q"},), tool_choice="required")
    fresh, cached = model.generate(request), model.generate(request)
    assert model.log.cache_hits == 1 and len(backend.requests) == 1
    assert cached.tool_calls == fresh.tool_calls and isinstance(cached.tool_calls[0], ToolCall)
    assert cached.tool_calls[0].error is not None and cached.tool_calls[0].raw_arguments == "{oops"
