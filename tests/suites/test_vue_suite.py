"""The Vue suite's pure parts: cases and specs, prompts, component extraction, pattern credits,
the weighted score and repeats. No Node here (see test_vue_grading.py for vue-tsc)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.suites import vue
from harness.suites.base import DataError, Score
from harness.suites.vue_project import FIXTURES, PathRefused, TypeCheck, VueProject, Workspace, parse_errors

PROJECT = FIXTURES / "project"


def test_the_fixture_cases_load_with_their_originals_and_references() -> None:
    items = vue.load()
    assert [i.id for i in items] == ["cart-summary", "data-table", "item-list", "legacy-counter", "paged-list",
                                     "rating-input", "search-box", "todo-list", "user-card", "user-profile"]
    for item in items:
        spec = item.meta["spec"]
        assert item.input["original"] == (PROJECT / spec.component).read_text()
        # Untyped originals: <script setup> in JavaScript, or the Options API (legacy-counter).
        assert ("<script setup>" in item.input["original"]) != (item.id == "legacy-counter")
        assert '<script setup lang="ts"' in item.reference
        assert (spec.compile_weight, spec.patterns_weight, spec.pass_score) == (4.0, 6.0, 8.0)
        assert {"script_setup_ts", "typed_props", "imports_kept", "no_any"} <= {p.check for p in spec.patterns}
        assert spec.expected_tools[-3:] == ("write_file", "run_type_check", "finish")
        assert set(spec.expected_tools) <= set(vue.AGENT_TOOLS)


def test_the_fixtures_are_graded_in_difficulty_and_plan_their_tools() -> None:
    specs = {i.id: i.meta["spec"] for i in vue.load()}
    assert {name: s.difficulty for name, s in specs.items()} == {
        "rating-input": 1, "search-box": 2, "paged-list": 2, "todo-list": 2, "user-card": 2, "cart-summary": 3,
        "user-profile": 3, "item-list": 4, "data-table": 4, "legacy-counter": 5}
    # A component that depends on another file reads it too before writing.
    for name in ("cart-summary", "user-profile", "search-box"):
        assert specs[name].expected_tools == ("read_file", "read_file", "write_file", "run_type_check", "finish")
    assert specs["rating-input"].expected_tools == ("read_file", "write_file", "run_type_check", "finish")


def test_the_agent_tools_are_the_agent_strategys() -> None:
    import inspect

    from harness.strategies import agent

    source = inspect.getsource(agent)
    assert all(f"def {tool}(" in source or f'"{tool}"' in source for tool in vue.AGENT_TOOLS)


def test_follows_the_expected_tools_in_order() -> None:
    expected = ("read_file", "write_file", "run_type_check", "finish")
    assert vue.follows(expected, ["read_file", "write_file", "run_type_check", "write_file", "run_type_check",
                                  "finish"])
    assert not vue.follows(expected, ["write_file", "run_type_check", "finish"])  # never read
    assert not vue.follows(expected, ["read_file", "run_type_check", "write_file", "finish"])  # checked first


def test_base_prompt_ends_inside_an_opened_vue_block_and_chat_prompt_asks_for_one() -> None:
    item = next(i for i in vue.load() if i.id == "user-card")
    base = vue.prompt(item, "base")
    assert item.input["original"].strip() in base and "{{original_code}}" not in base
    assert base.endswith("(src/components/UserCard.vue):\n\n```vue\n")
    assert vue.prompt(item, "chat").endswith("in one ```vue code block.")
    assert "write_file" in vue.agent_task(item) and "src/components/UserCard.vue" in vue.agent_task(item)
    with pytest.raises(ValueError, match="unknown prompt style"):
        vue.prompt(item, "poetry")


COMPONENT = '<script setup lang="ts">\nconst a = 1\n</script>\n\n<template><p>{{ a }}</p></template>'


@pytest.mark.parametrize("output", [
    COMPONENT + "\n```\nThat is all.",  # a base model's continuation, closed by a fence
    "Here it is:\n\n```vue\n" + COMPONENT + "\n```\nHope it helps.",  # a chat answer
    "```html\n" + COMPONENT + "\n```",
    COMPONENT,  # no fence at all (the oracle)
])
def test_extract_component_finds_the_sfc(output: str) -> None:
    assert vue.extract_component(output) == COMPONENT + "\n"


def test_extract_component_is_none_without_a_component() -> None:
    assert vue.extract_component("The code is in the project root.\n") is None
    assert vue.extract_component("```ts\nconst x: number = 1\n```") is None


def facts(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "lang": "ts", "script_setup": True, "props": "type", "emits": "type", "any_count": 0,
        "type_declarations": [{"kind": "interface", "name": "User"}, {"kind": "type", "name": "Filter"}],
        "reactive": [{"call": "ref", "name": "a", "typed": True},
                     {"call": "ref", "name": "b", "typed": False},
                     {"call": "computed", "name": "c", "typed": False}],
        "imports": [{"source": "vue", "names": ["ref"], "type_only": False}],
        "function_params_total": 4, "function_params_typed": 3, "parse_errors": [], "text": "",
    }
    return {**base, **overrides}


ORIGINAL = facts(lang="js", imports=[{"source": "vue", "names": ["ref", "computed"], "type_only": False},
                                     {"source": "../utils/format", "names": ["plural"], "type_only": False}])


@pytest.mark.parametrize(("check", "params", "answer", "credit"), [
    ("script_setup_ts", {}, facts(), 1.0),
    ("script_setup_ts", {}, facts(lang="js"), 0.0),
    ("script_setup_ts", {}, facts(script_setup=False), 0.0),
    ("typed_props", {}, facts(props="runtime"), 0.0),
    ("typed_emits", {}, facts(), 1.0),
    ("type_declarations", {"min": 2}, facts(), 1.0),
    ("type_declarations", {"min": 3}, facts(), 0.0),
    ("type_declarations", {"names": ["User", "Props"]}, facts(), 0.5),
    ("typed_refs", {}, facts(), 0.5),  # computed() is not a ref unless named in `calls`
    ("typed_refs", {"calls": ["ref", "computed"]}, facts(), 1 / 3),
    ("typed_refs", {}, facts(reactive=[]), 0.0),
    ("typed_params", {}, facts(), 0.75),
    ("imports_kept", {}, facts(), 1 / 3),
    ("no_any", {}, facts(any_count=2), 0.0),
    ("no_any", {}, facts(lang="js"), 0.0),
    ("regex", {"regex": r"^interface \w+"}, facts(text="x\ninterface Props {}"), 1.0),
])
def test_pattern_credits(check: str, params: dict[str, Any], answer: dict[str, Any], credit: float) -> None:
    assert vue.CHECKS[check](answer, ORIGINAL, params) == pytest.approx(credit)


def write_case(root: Path, spec: dict[str, Any] | str, prompt: str = "Type:\n{{original_code}}\n") -> Path:
    case = root / "cases" / "one"
    case.mkdir(parents=True)
    (case / "spec.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    (case / "prompt.txt").write_text(prompt)
    (case / "reference.vue").write_text(COMPONENT)
    return root / "cases"


GOOD_SPEC = {"component": "src/components/UserCard.vue", "weights": {"compilation": 1, "patterns": 1},
             "patterns": [{"id": "ts", "check": "script_setup_ts", "weight": 1}]}


@pytest.mark.parametrize(("spec", "where", "problem"), [
    ({**GOOD_SPEC, "component": "src/Nope.vue"}, "field 'component'", "no component"),
    ({**GOOD_SPEC, "weights": {"compilation": -1, "patterns": 1}}, "field 'weights.compilation'", ">= 0"),
    ({**GOOD_SPEC, "weights": {"compilation": 0, "patterns": 0}}, "field 'weights'", "both be 0"),
    ({**GOOD_SPEC, "patterns": []}, "field 'patterns'", "non-empty list"),
    ({**GOOD_SPEC, "patterns": [{"id": "x", "check": "vibes", "weight": 1}]}, "field 'patterns[0].check'",
     "unknown check 'vibes'"),
    ({**GOOD_SPEC, "patterns": [{"id": "x", "check": "regex", "regex": "(", "weight": 1}]},
     "field 'patterns[0].regex'", "bad regex"),
    ({**GOOD_SPEC, "patterns": [{"id": "x", "check": "no_any"}]}, "field 'patterns[0].weight'", "None"),
    ('{"component": \n oops}', "line 2", "not valid JSON"),
    ({**GOOD_SPEC, "expected_tools": ["read_file", "compile"]}, "field 'expected_tools'", "the agent's tools"),
    ({**GOOD_SPEC, "difficulty": 9}, "field 'difficulty'", "from 1 to 5"),
])
def test_bad_specs_name_the_file_and_field(tmp_path: Path, spec: Any, where: str, problem: str) -> None:
    cases = write_case(tmp_path, spec)
    with pytest.raises(DataError) as error:
        vue.load(cases, PROJECT)
    message = str(error.value)
    assert str(cases / "one" / "spec.json") in message and where in message and problem in message


def test_a_prompt_without_the_placeholder_is_refused(tmp_path: Path) -> None:
    cases = write_case(tmp_path, GOOD_SPEC, prompt="Type the component.")
    with pytest.raises(DataError, match=r"prompt\.txt: the prompt template has no \{\{original_code\}\}"):
        vue.load(cases, PROJECT)


class FakeProject:
    """Facts as the parser would give them, and a chosen vue-tsc verdict: the score's arithmetic."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.root = PROJECT
        self.answer = answer
        self.keep_failed = False

    def facts(self, paths: list[Path]) -> list[dict[str, Any]]:
        return [ORIGINAL, dict(self.answer)]


class FakeWorkspace:
    def __init__(self, root: Path, passed: bool) -> None:
        self.root = root
        self.passed = passed

    def type_check(self) -> TypeCheck:
        return TypeCheck(self.passed, 0 if self.passed else 2, 0.1, "")


@pytest.mark.parametrize(("answer", "passed", "score", "correct"), [
    (facts(), True, 4 + 6 * (2 + 3 + 2 + 2 + 2 * 0.5 + 1 * 0.75 + 1 / 3 + 1) / 14, True),
    (facts(), False, 6 * (2 + 3 + 2 + 2 + 2 * 0.5 + 1 * 0.75 + 1 / 3 + 1) / 14, False),
    # vue-tsc passes a JavaScript component without checking it: no credit for compiling
    (facts(lang="js"), True, 6 * (3 + 2 + 2 + 2 * 0.5 + 0.75 + 1 / 3) / 14, False),
])
def test_score_weighs_compilation_and_patterns(tmp_path: Path, answer: dict[str, Any], passed: bool,
                                               score: float, correct: bool) -> None:
    item = next(i for i in vue.load() if i.id == "todo-list")  # weights 4 and 6, pattern weights sum to 14
    graded = vue.grade(item, FakeWorkspace(tmp_path, passed), FakeProject(answer))  # type: ignore[arg-type]
    assert graded.score.scores["score"] == pytest.approx(score, abs=1e-3)
    assert graded.score.correct is correct
    assert graded.score.scores["compiled"] == float(passed and answer["lang"] == "ts")


def test_repeats_are_recorded_as_mean_and_spread() -> None:
    runs = [(Score(True, {"score": 10.0, "compiled": 1.0}), {"repeat": 0}),
            (Score(False, {"score": 6.0, "compiled": 1.0}), {"repeat": 1}),
            (Score(True, {"score": 8.0, "compiled": 1.0}), {"repeat": 2})]
    score, extra = vue.combine(runs, pass_score=8)
    assert score.scores == {"score": 8.0, "compiled": 1.0, "score_stdev": 2.0}
    assert score.correct is True
    assert extra["scores"] == [10.0, 6.0, 8.0] and (extra["score_min"], extra["score_max"]) == (6.0, 10.0)
    assert [r["repeat"] for r in extra["repeats"]] == [0, 1, 2]
    assert vue.combine(runs[:1], pass_score=8) == runs[0]


def test_vue_tsc_error_lines_are_parsed_with_their_continuations() -> None:
    output = ("src/App.vue(12,5): error TS2322: Type 'string' is not assignable to type 'number'.\n"
              "  The expected type comes from property 'id'.\n"
              "src/components/TodoList.vue(3,1): error TS2304: Cannot find name 'x'.\n")
    errors = parse_errors(output)
    assert [(e.file, e.line, e.column, e.code) for e in errors] == [
        ("src/App.vue", 12, 5, "TS2322"), ("src/components/TodoList.vue", 3, 1, "TS2304")]
    assert errors[0].message.endswith("to type 'number'. The expected type comes from property 'id'.")


def test_the_workspace_is_a_confined_copy_removed_afterwards() -> None:
    # Copying and confinement need no Node: node_modules is only linked.
    fixture = (PROJECT / "src" / "components" / "UserCard.vue").read_text()
    with Workspace(VueProject()) as workspace:
        root = workspace.root
        assert root != PROJECT and (root / "node_modules").is_symlink()
        assert workspace.write("src/components/UserCard.vue", "<template />") == len("<template />")
        assert workspace.read("src/components/UserCard.vue") == "<template />"
        assert "UserCard.vue" in workspace.read("src/components").splitlines()
        for path in ("../../etc/passwd", "/etc/passwd", "src/../../outside.txt", "", "node_modules/vue/x.js"):
            with pytest.raises(PathRefused):
                workspace.write(path, "x")
        with pytest.raises(PathRefused, match="only files under src/"):
            workspace.write("tsconfig.json", '{"compilerOptions": {"strict": false}}')
        with pytest.raises(PathRefused, match="outside the project"):
            workspace.read("../../../etc/passwd")
        assert not (root.parent / "outside.txt").exists() and workspace.version == 1
    assert not root.exists()
    assert (PROJECT / "src" / "components" / "UserCard.vue").read_text() == fixture


def test_missing_node_modules_says_how_to_install(tmp_path: Path) -> None:
    from harness.suites.vue_project import NodeToolsMissing

    (tmp_path / "package.json").write_text("{}")
    with pytest.raises(NodeToolsMissing, match="run npm ci --prefix fixtures/vue/project"):
        VueProject(root=tmp_path).workspace()
