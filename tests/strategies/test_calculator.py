"""The router's calculator: arithmetic only, bounded, and a second tool the comparison counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.scripted import ScriptedBackend
from harness.core.record import CaseRecord
from harness.models.call import ModelCall
from harness.report.comparison import compare
from harness.strategies.calculator import calculator_tool, evaluate
from harness.strategies.delegate import route
from harness.strategies.tool_loop import ToolError


@pytest.mark.parametrize("expression, value", [
    ("48 + 48 / 2", "72"), ("(3 + 4) * 2", "14"), ("-2 ** 2", "-4"), ("7 // 2", "3"), ("7 % 4", "3"),
    ("10 / 4", "2.5"), ("2^10", "1024"), ("1,200 * 3", "3600"), (" 0.1 + 0.2 ", "0.3"), ("+5", "5"),
])
def test_arithmetic_is_evaluated(expression: str, value: str) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize("expression, why", [
    ("__import__('os').system('true')", "only arithmetic"), ("open('/etc/passwd')", "only arithmetic"),
    ("x + 1", "only arithmetic"), ("(1).__class__", "only arithmetic"), ("[1, 2][0]", "only arithmetic"),
    ("lambda: 1", "only arithmetic"), ("'a' * 3", "only arithmetic"), ("True + 1", "only arithmetic"),
    ("1 if 1 else 2", "only arithmetic"), ("2 < 3", "only arithmetic"), ("1; 2", "not an arithmetic"),
    ("9 ** 9 ** 9", "exponent"), ("10.0 ** 60", "too large"), ("1 / 0", "division by zero"),
    ("1" * 201, "longer than 200"), ("", "empty"), ("(-1) ** 0.5", "not a real number"),
    ("1e300 * 1e300", "too large"),
])
def test_anything_else_is_refused(expression: str, why: str) -> None:
    with pytest.raises(ToolError, match=why):
        evaluate(expression)


def test_the_tool_checks_its_argument() -> None:
    tool = calculator_tool()
    assert tool.run({"expression": "6 * 7"}) == "42"
    with pytest.raises(ToolError, match="must be a string"):
        tool.run({"expression": 42})


def test_router_offers_both_tools_and_the_comparison_counts_each(tmp_path: Path) -> None:
    calls = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "48 / 2?"}},
                            {"name": "calculate", "arguments": {"expression": "48 + 24"}}]}
    large = ScriptedBackend.from_steps([calls, "The answer is 72."], name="large")
    small = ScriptedBackend.from_steps(["24"], name="small")
    result = route(ModelCall(large.spec, large), ModelCall(small.spec, small), "q", small_prompt=str,
                   tool_choice="required", calculator=True)
    first = large.requests[0]
    assert [t["function"]["name"] for t in first.tools] == ["ask_small_model", "calculate"]
    assert first.tool_choice == "ask_small_model"  # "required" names the router's own tool
    assert "calculate" in first.messages[0]["content"]
    assert [(c.name, c.ok, c.result) for c in result.loop.calls] == [("ask_small_model", True, "24"),
                                                                    ("calculate", True, "72")]
    records = [CaseRecord(run_id="r", case_id=f"c{i}", suite="gsm8k", item_id=str(i), model="s+l", backend="b",
                          strategy="delegate", status="ok", correct=True,
                          tool_calls=[c.to_dict() for c in result.loop.calls][: 2 - i]) for i in range(2)]
    row = compare(records)["variants"]["delegate:s+l"]
    assert row["tool_calls_per_item"] == 1.5
    assert row["tool_calls_per_item_by_tool"] == {"ask_small_model": 1.0, "calculate": 0.5}
    assert json.dumps(row)  # plain JSON for comparison.json
