"""The coding agent's control flow, driven by the scripted backend over a real project copy with a
real vue-tsc: tool calls, self-correction, path confinement, and a model that never calls a tool."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from vue_support import requires_vue_tools

from harness.backends.scripted import ScriptedBackend
from harness.models.call import ModelCall
from harness.strategies import agent
from harness.suites import vue
from harness.suites.base import Item
from harness.suites.vue_project import VueProject, Workspace

TARGET = "src/components/TodoList.vue"


@pytest.fixture(scope="module")
def item() -> Item:
    return next(i for i in vue.load() if i.id == "todo-list")


def run(steps: list[Any], workspace: Workspace, item: Item,
        **kwargs: Any) -> tuple[agent.AgentRun, ScriptedBackend]:
    backend = ScriptedBackend.from_steps(steps, then="error")
    model = ModelCall(backend.spec, backend)
    return agent.run_agent(model, vue.agent_task(item), workspace, **kwargs), backend


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


@requires_vue_tools
def test_read_write_broken_check_fix_finish_is_a_self_correction(item: Item) -> None:
    broken = item.reference.replace("const draft = ref<string>('')", "const draft = ref<number>('')")
    steps = [call("read_file", path=TARGET), call("write_file", path=TARGET, content=broken),
             call("run_type_check"), call("write_file", path=TARGET, content=item.reference),
             call("run_type_check"), call("finish", summary="typed")]
    project = VueProject()
    with project.workspace() as workspace:
        result, backend = run(steps, workspace, item)
        graded = vue.grade(item, workspace, project)  # reuses the last check: nothing written since
    assert result.tools_used == ["read_file", "write_file", "run_type_check", "write_file", "run_type_check",
                                 "finish"]
    assert result.loop.stopped == "finish_tool" and result.checks == [False, True]
    assert (result.tool_calls_count, result.iterations, result.iterations_to_success) == (6, 6, 5)
    assert result.self_corrected is True
    # What the model was told: the file it read, then vue-tsc's errors with file, line and code.
    told = [m["content"] for m in backend.requests[-1].messages if m["role"] == "tool"]
    assert told[0] == item.input["original"]
    assert told[2].startswith("vue-tsc found") and "TodoList.vue(31,27): error TS2345" in told[2]
    assert told[4] == "vue-tsc: no type errors."
    assert graded.score.scores["score"] == 10.0
    assert agent.efficiency(1.0, result.iterations, ideal=4) == pytest.approx(4 / 6, abs=1e-4)
    metrics = result.metrics()
    assert metrics["self_corrected"] and metrics["tool_errors"] == []


def test_a_write_outside_the_project_is_refused(item: Item, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The copy goes two levels below tmp_path, so a write that escaped would land in tmp_path/etc,
    # never in the real /etc.
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a" / "b"))
    steps = [call("write_file", path="../../etc/passwd", content="root::0:0::/:/bin/sh\n"),
             call("write_file", path=str(tmp_path / "a" / "escaped.txt"), content="x"),
             call("read_file", path="../../../../../../../../etc/hostname"), call("finish")]
    with Workspace(VueProject()) as workspace:  # no type check here: no Node needed
        assert workspace.root.parent == tmp_path / "a" / "b"
        result, _ = run(steps, workspace, item)
    assert not (tmp_path / "a" / "etc").exists() and not (tmp_path / "a" / "escaped.txt").exists()
    assert [(c.name, c.ok) for c in result.loop.calls] == [("write_file", False), ("write_file", False),
                                                           ("read_file", False), ("finish", True)]
    assert result.loop.calls[0].result == "error: '../../etc/passwd' is outside the project"
    assert all("outside the project" in c.result for c in result.loop.calls[:3])
    assert result.iterations_to_success is None and not result.self_corrected


def test_a_plain_answer_ends_at_once_with_no_tool_calls(item: Item) -> None:
    with Workspace(VueProject()) as workspace:
        result, backend = run(["I cannot use tools."], workspace, item)
        assert workspace.read(TARGET) == item.input["original"]  # the project as it was
    assert (result.tool_calls_count, result.iterations, result.loop.stopped) == (0, 1, "answer")
    assert result.tools_used == [] and result.iterations_to_success is None and not result.self_corrected
    first = backend.requests[0]
    assert [m["role"] for m in first.messages] == ["system", "user"]
    tools = {t["function"]["name"] for t in first.tools}
    assert tools == {"read_file", "write_file", "run_type_check", "finish"}


def test_the_loop_stops_after_max_iterations(item: Item) -> None:
    with Workspace(VueProject()) as workspace:
        backend = ScriptedBackend.from_steps([call("read_file", path="src")], then="repeat")
        result = agent.run_agent(ModelCall(backend.spec, backend), "go", workspace, max_iterations=3)
    assert result.loop.stopped == "max_turns" and result.iterations == 3 and result.tool_calls_count == 3
    assert agent.efficiency(1.0, 12, ideal=4) == pytest.approx(1 / 3, abs=1e-4)
    assert agent.efficiency(0.5, 2, ideal=4) == 0.5
