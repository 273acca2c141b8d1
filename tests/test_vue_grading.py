"""Grading with the real tools: vue-tsc over a copy of the fixture project, the SFC parser, the
weighted score. Each test runs vue-tsc once (a few seconds each)."""

from __future__ import annotations

import pytest
from vue_support import requires_vue_tools

from harness.suites import vue
from harness.suites.base import Item
from harness.suites.vue_project import FIXTURES, VueProject

pytestmark = requires_vue_tools


@pytest.fixture(scope="module")
def project() -> VueProject:
    return VueProject()


@pytest.fixture(scope="module")
def cases() -> dict[str, Item]:
    return {item.id: item for item in vue.load()}


def test_the_reference_compiles_and_scores_ten(project: VueProject, cases: dict[str, Item]) -> None:
    item = cases["todo-list"]
    graded = vue.grade_component(item, item.reference, project)
    assert graded.type_check.passed and graded.type_check.errors == []
    assert graded.compiled and graded.score.correct
    assert graded.score.scores["score"] == 10.0
    assert set(graded.credits.values()) == {1.0}
    assert graded.facts["props"] == "type" and graded.facts["emits"] == "type"


def test_the_untyped_original_scores_low(project: VueProject, cases: dict[str, Item]) -> None:
    item = cases["user-card"]
    graded = vue.grade_component(item, item.input["original"], project)
    # vue-tsc passes: a JavaScript component is not type-checked, so compiling earns nothing.
    assert graded.type_check.passed and not graded.compiled
    assert graded.credits["imports_kept"] == 1.0 and graded.credits["typed_props"] == 0.0
    assert graded.score.scores["score"] == pytest.approx(10 * 6 * (1 / 13) / 10, abs=1e-3)
    assert graded.score.scores["score"] < 1 and not graded.score.correct


def test_a_type_error_fails_compilation_and_is_recorded(project: VueProject, cases: dict[str, Item]) -> None:
    item = cases["todo-list"]
    broken = item.reference.replace("const draft = ref<string>('')", "const draft = ref<number>('')")
    assert broken != item.reference
    graded = vue.grade_component(item, broken, project)
    assert not graded.type_check.passed and not graded.compiled and not graded.score.correct
    errors = {(e.file, e.line, e.code) for e in graded.type_check.errors}
    assert ("src/components/TodoList.vue", 31, "TS2345") in errors  # ref<number>('')
    assert ("src/components/TodoList.vue", 44, "TS2339") in errors  # draft.value.trim()
    details = graded.details()
    assert details["compile_errors"][0]["message"] and "TS2345" in details["compile_output"]
    # The patterns still hold; only the compilation share (4 of 10) is lost.
    assert graded.score.scores["score"] == 6.0
    fixture = FIXTURES / "project" / "src" / "components" / "TodoList.vue"
    assert fixture.read_text() == item.input["original"]  # the answer went into a copy


def test_the_component_must_fit_the_code_that_uses_it(project: VueProject, cases: dict[str, Item]) -> None:
    # App.vue handles `select` with (id: number): a component that emits a string id breaks it.
    item = cases["user-card"]
    wrong = item.reference.replace("select: [id: number]", "select: [id: string]")
    assert wrong != item.reference
    graded = vue.grade_component(item, wrong, project)
    assert not graded.compiled
    assert any(e.file == "src/App.vue" for e in graded.type_check.errors), graded.type_check.output


def test_keep_failed_leaves_a_failing_workspace_on_disk(cases: dict[str, Item]) -> None:
    import shutil
    from pathlib import Path

    item = cases["user-card"]
    graded = vue.grade_component(item, item.input["original"], VueProject(keep_failed=True))
    assert not graded.score.correct
    kept = graded.details()["kept_workspace"]
    try:
        assert (Path(kept) / item.input["component"]).read_text() == item.input["original"]
    finally:
        shutil.rmtree(kept, ignore_errors=True)


NEW_CASES = ["rating-input", "search-box", "paged-list", "cart-summary", "user-profile", "item-list", "data-table",
             "legacy-counter"]


@pytest.mark.parametrize("case", NEW_CASES)
def test_each_fixture_reference_compiles_and_scores_ten_and_its_original_does_not(
        project: VueProject, cases: dict[str, Item], case: str) -> None:
    item = cases[case]
    graded = vue.grade_component(item, item.reference, project)
    assert graded.type_check.passed, graded.type_check.output
    assert graded.compiled and graded.score.correct
    assert graded.credits == {p.id: 1.0 for p in item.meta["spec"].patterns}
    assert graded.score.scores["score"] == 10.0
    untyped = vue.grade_component(item, item.input["original"], project)
    assert not untyped.compiled and not untyped.score.correct and untyped.score.scores["score"] < 2
