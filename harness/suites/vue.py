"""Vue to TypeScript: a model adds types to an untyped Vue 3 component inside a real project.

Each case is a folder of fixtures/vue/cases: `prompt.txt` (a template with {{original_code}}),
`reference.vue` (a typed version written for the fixture) and `spec.json`, which names the component
in the project (fixtures/vue/project, where the untyped original lives) and weighs the score:

    {"component": "src/components/UserCard.vue",
     "weights": {"compilation": 4, "patterns": 6}, "pass_score": 8, "ideal_iterations": 4,
     "patterns": [{"id": "typed_props", "check": "typed_props", "weight": 3}, ...]}

The answer goes into a copy of the project; vue-tsc checks the whole copy (so the component must
still fit the code that uses it) and @vue/compiler-sfc's AST gives the facts the patterns are
weighed against. The final 0-10 score is the weighted mean of compilation (vue-tsc passes and the
component is TypeScript: plain JavaScript is not type-checked at all) and the pattern credits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.settings import option
from harness.suites.base import DataError, Item, Score, sample
from harness.suites.unit import LoadContext, Suite
from harness.suites.vue_project import FIXTURES, TypeCheck, VueProject, Workspace

CASES = FIXTURES / "cases"
PLACEHOLDER = "{{original_code}}"
_ID = re.compile(r"[A-Za-z0-9_-]+")
_FENCE = re.compile(r"^[ \t]*```.*$", re.MULTILINE)

Facts = Mapping[str, Any]


def _credit_script_setup_ts(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    return float(facts["script_setup"] and facts["lang"] == "ts")


def _credit_typed_props(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    return float(facts["props"] == "type")


def _credit_typed_emits(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    return float(facts["emits"] == "type")


def _credit_type_declarations(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    names = {d["name"] for d in facts["type_declarations"]}
    wanted = params.get("names")
    if wanted:
        return sum(name in names for name in wanted) / len(wanted)
    return float(len(names) >= int(params.get("min", 1)))


def _credit_typed_refs(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    # The share of ref()/computed() calls (as `calls` names) with a type argument or annotation.
    calls = set(params.get("calls", ("ref", "shallowRef")))
    found = [r for r in facts["reactive"] if r["call"] in calls]
    return sum(r["typed"] for r in found) / len(found) if found else 0.0


def _credit_typed_params(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    total = facts["function_params_total"]
    return facts["function_params_typed"] / total if total else 0.0


def _credit_imports_kept(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    wanted = {(i["source"], name) for i in original["imports"] for name in i["names"]}
    have = {(i["source"], name) for i in facts["imports"] for name in i["names"]}
    return len(wanted & have) / len(wanted) if wanted else 1.0


def _credit_no_any(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    # Only TypeScript can avoid `any` on purpose; JavaScript has none to count.
    return float(facts["lang"] == "ts" and facts["any_count"] == 0)


def _credit_regex(facts: Facts, original: Facts, params: Mapping[str, Any]) -> float:
    return float(re.search(params["regex"], facts.get("text", ""), re.MULTILINE) is not None)


# check name -> credit in [0, 1] from the answer's facts (and the original's, for imports_kept)
CHECKS: dict[str, Callable[[Facts, Facts, Mapping[str, Any]], float]] = {
    "script_setup_ts": _credit_script_setup_ts,
    "typed_props": _credit_typed_props,
    "typed_emits": _credit_typed_emits,
    "type_declarations": _credit_type_declarations,
    "typed_refs": _credit_typed_refs,
    "typed_params": _credit_typed_params,
    "imports_kept": _credit_imports_kept,
    "no_any": _credit_no_any,
    "regex": _credit_regex,
}


@dataclass(frozen=True)
class Pattern:
    id: str
    check: str
    weight: float
    description: str = ""
    params: tuple[tuple[str, Any], ...] = ()  # the check's own fields (min, names, calls, regex)


@dataclass(frozen=True)
class Spec:
    component: str  # the untyped original, relative to the project root
    compile_weight: float
    patterns_weight: float
    patterns: tuple[Pattern, ...]
    pass_score: float = 8.0
    ideal_iterations: int = 4  # read, write, check, finish: the agent's efficiency counts from here
    difficulty: int = 1  # 1 (props and emits) to 5 (an Options-API component to convert)
    # The tools an agent is expected to call, in order (the original plan's sequence per case):
    # reading the files the component depends on, writing it, checking, finishing.
    expected_tools: tuple[str, ...] = ("read_file", "write_file", "run_type_check", "finish")


# The agent mode's tools (harness/strategies/agent.py); a spec's expected_tools name only these.
AGENT_TOOLS = ("read_file", "write_file", "run_type_check", "finish")


def follows(expected: Sequence[str], used: Sequence[str]) -> bool:
    """True when the tools used contain the expected sequence in order (others may come between)."""
    calls = iter(used)
    return all(any(call == tool for call in calls) for tool in expected)


def read_spec(path: Path, project_root: Path) -> Spec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "spec file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError(path, "the spec must be a JSON object")
    component = data.get("component")
    if not isinstance(component, str) or not (project_root / component).is_file():
        raise DataError(path, f"no component {component!r} in {project_root}", field="component")
    weights = data.get("weights", {})
    compile_weight = _number(path, weights.get("compilation"), "weights.compilation")
    patterns_weight = _number(path, weights.get("patterns"), "weights.patterns")
    if compile_weight + patterns_weight <= 0:
        raise DataError(path, "the weights must not both be 0", field="weights")
    raw_patterns = data.get("patterns")
    if not isinstance(raw_patterns, list) or not raw_patterns:
        raise DataError(path, "a non-empty list of patterns is required", field="patterns")
    patterns = tuple(_pattern(path, index, entry) for index, entry in enumerate(raw_patterns))
    ids = [p.id for p in patterns]
    if len(set(ids)) != len(ids):
        raise DataError(path, f"pattern ids must be unique: {ids}", field="patterns")
    tools = data.get("expected_tools", list(Spec.expected_tools))
    if not isinstance(tools, list) or not tools or any(t not in AGENT_TOOLS for t in tools):
        raise DataError(path, f"a non-empty list of the agent's tools ({', '.join(AGENT_TOOLS)}) is required, "
                              f"not {tools!r}", field="expected_tools")
    difficulty = data.get("difficulty", 1)
    if not isinstance(difficulty, int) or isinstance(difficulty, bool) or not 1 <= difficulty <= 5:
        raise DataError(path, f"an integer from 1 to 5 is required, not {difficulty!r}", field="difficulty")
    return Spec(component, compile_weight, patterns_weight, patterns,
                _number(path, data.get("pass_score", 8.0), "pass_score"),
                int(_number(path, data.get("ideal_iterations", 4), "ideal_iterations")),
                difficulty, tuple(tools))


def _number(path: Path, value: Any, name: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value < 0 or not math.isfinite(value):
        raise DataError(path, f"a number >= 0 is required, not {value!r}", field=name)
    return float(value)


def _pattern(path: Path, index: int, entry: Any) -> Pattern:
    where = f"patterns[{index}]"
    if not isinstance(entry, dict):
        raise DataError(path, "each pattern must be an object", field=where)
    if not isinstance(entry.get("id"), str) or not _ID.fullmatch(entry["id"]):
        raise DataError(path, "an id of letters, digits, - and _ is required", field=f"{where}.id")
    if entry.get("check") not in CHECKS:
        raise DataError(path, f"unknown check {entry.get('check')!r}; checks: {', '.join(CHECKS)}",
                        field=f"{where}.check")
    if entry["check"] == "regex":
        try:
            re.compile(entry.get("regex", ""))
        except (re.error, TypeError) as exc:
            raise DataError(path, f"bad regex: {exc}", field=f"{where}.regex") from None
    params = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in entry.items()
                          if k not in ("id", "check", "weight", "description")))
    return Pattern(entry["id"], entry["check"], _number(path, entry.get("weight"), f"{where}.weight"),
                   str(entry.get("description", "")), params)


def load(root: Path = CASES, project_root: Path = FIXTURES / "project", *, samples: int | None = None,
         seed: int = 0) -> list[Item]:
    """One item per case folder, in name order."""
    if not root.is_dir():
        raise DataError(root, "no such folder of Vue cases")
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not _ID.fullmatch(folder.name):
            raise DataError(folder, "a case folder's name must be letters, digits, - and _")
        spec = read_spec(folder / "spec.json", project_root)
        template = _text(folder / "prompt.txt")
        if PLACEHOLDER not in template:
            raise DataError(folder / "prompt.txt", f"the prompt template has no {PLACEHOLDER} placeholder")
        items.append(Item(
            id=folder.name,
            input={"component": spec.component, "original": _text(project_root / spec.component),
                   "template": template},
            reference=_text(folder / "reference.vue"),
            meta={"spec": spec, "folder": str(folder)},
        ))
    if not items:
        raise DataError(root, "no case folders")
    return sample(items, samples, seed)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 (byte {exc.start})") from None


def prompt(item: Item, style: str = "base") -> str:
    """The template with the original filled in, and an ending for the kind of model.

    A base model continues text: the prompt ends inside an opened ```vue block. A chat model is
    asked for the component in a code block.
    """
    text = item.input["template"].replace(PLACEHOLDER, item.input["original"].rstrip("\n")).rstrip()
    if style == "base":
        return f"{text}\n\nThe same component with TypeScript ({item.input['component']}):\n\n```vue\n"
    if style == "chat":
        return f"{text}\n\nReply with the complete TypeScript component in one ```vue code block."
    raise ValueError(f"unknown prompt style {style!r}; expected base or chat")


def agent_task(item: Item) -> str:
    """The agent's first user message: the same task, done through the tools."""
    text = item.input["template"].replace(PLACEHOLDER, item.input["original"].rstrip("\n")).rstrip()
    path = item.input["component"]
    return (f"{text}\n\nThe component is the file {path} of the project. Write the TypeScript version to "
            f"{path} with write_file, check the project with run_type_check, fix what it reports, and "
            "call finish when the check passes.")


def extract_component(text: str) -> str | None:
    """The component in a model's output: the text before a closing fence (a base model's
    continuation) or the first fenced block, whichever holds a <script> or <template>."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    candidates = [text[: fences[0]] if fences else text]
    # Fences pair up as opening and closing; an unclosed last block runs to the end of the text.
    for opening, closing in zip(fences[::2], [*fences[1::2], len(text)], strict=False):
        start = text.find("\n", opening)
        candidates.append(text[start + 1: closing] if start != -1 and start < closing else "")
    for candidate in candidates:
        if "<script" in candidate or "<template" in candidate:
            return candidate.strip("\n") + "\n"
    return None


@dataclass
class Grade:
    """One answer's grade: the Score, and what it came from."""

    score: Score
    compiled: bool
    type_check: TypeCheck
    credits: dict[str, float]
    facts: dict[str, Any]
    kept_workspace: str | None = None  # --keep-failed: where the failing workspace stays

    def details(self) -> dict[str, Any]:
        """What a record keeps: the score's parts, compile errors, the parser's view."""
        kept = {"kept_workspace": self.kept_workspace} if self.kept_workspace else {}
        return {**kept,
            "final_score": self.score.scores["score"], "compiled": self.compiled,
            "type_check_passed": self.type_check.passed, "type_check_s": round(self.type_check.seconds, 3),
            "compile_errors": [e.to_dict() for e in self.type_check.errors[:20]],
            "compile_output": self.type_check.output[-2000:] if not self.type_check.passed else "",
            "patterns": self.credits,
            "facts": {k: self.facts[k] for k in ("lang", "script_setup", "props", "emits", "any_count",
                                                  "parse_errors", "script_errors", "compile_error")},
        }


def grade(item: Item, workspace: Workspace, project: VueProject) -> Grade:
    """Grade the component as it stands in the workspace (the rest of the project included)."""
    spec: Spec = item.meta["spec"]
    check = workspace.type_check()
    answer_path = workspace.root / spec.component
    original, facts = project.facts([project.root / spec.component, answer_path])
    facts["text"] = answer_path.read_text(encoding="utf-8", errors="replace") if answer_path.is_file() else ""
    credits = {p.id: round(CHECKS[p.check](facts, original, dict(p.params)), 4) for p in spec.patterns}
    pattern_weight = sum(p.weight for p in spec.patterns)
    earned = sum(p.weight * credits[p.id] for p in spec.patterns)
    patterns = earned / pattern_weight if pattern_weight else 0.0
    # Compiling counts only for TypeScript: vue-tsc does not type-check a JavaScript component.
    compiled = check.passed and facts["lang"] == "ts" and not facts["parse_errors"]
    total = spec.compile_weight + spec.patterns_weight
    value = round(10 * (spec.compile_weight * compiled + spec.patterns_weight * patterns) / total, 4)
    scores = {"score": value, "compiled": float(compiled), "patterns": round(patterns, 4),
              **{f"pattern_{k}": v for k, v in credits.items()}}
    passed = compiled and value >= spec.pass_score
    # --keep-failed: a failing workspace is left on disk for debugging (Workspace.close keeps it).
    workspace.keep = project.keep_failed and not passed
    return Grade(Score(passed, scores), compiled, check, credits, facts,
                 str(workspace.root) if workspace.keep else None)


def grade_component(item: Item, component: str, project: VueProject) -> Grade:
    """Single-shot grading: the answer becomes the component file in a fresh project copy."""
    with project.workspace() as workspace:
        workspace.write(item.input["component"], component)
        return grade(item, workspace, project)


def combine(runs: Sequence[tuple[Score, dict[str, Any]]], pass_score: float) -> tuple[Score, dict[str, Any]]:
    """N repeats of one case -> one Score (means, and the spread of the 0-10 score) and extras.

    One run is recorded as it is; several keep each run's details under `repeats`.
    """
    if len(runs) == 1:
        return runs[0]
    keys = [k for k in runs[0][0].scores if all(k in s.scores for s, _ in runs)]
    import statistics  # loaded when runs are combined, not when pytest registers the suite

    scores = {k: round(statistics.fmean(s.scores[k] for s, _ in runs), 4) for k in keys}
    values = [s.scores["score"] for s, _ in runs]
    scores["score_stdev"] = round(statistics.stdev(values), 4)
    spread = {"score_mean": scores["score"], "score_stdev": scores["score_stdev"],
              "score_min": min(values), "score_max": max(values), "scores": values}
    compiled_all = all(s.scores.get("compiled") == 1.0 for s, _ in runs)
    score = Score(compiled_all and scores["score"] >= pass_score, scores)
    return score, {**spread, "repeats": [d for _, d in runs]}


# -- the suite as the harness registers it (harness/suites/unit.py) --------------------------------

MODES = ("single", "agent")


@dataclass(frozen=True)
class Options:
    mode: tuple[str, ...] = option("Vue suite modes, comma-separated: single (one prompt, the answer is the file) "
                                   "and agent (read_file/write_file/run_type_check/finish in a loop)", ("single",),
                                   choices=MODES)
    repeats: int = option("runs of each Vue case, recorded as mean and standard deviation", 1, minimum=1)
    max_tokens: int = option("most tokens of a Vue answer or agent turn", 1024, minimum=1)
    max_iterations: int = option("most model turns of the Vue agent", 10, minimum=1)
    temperature: float = option("sampling temperature of the Vue suite", 0.0, minimum=0)
    keep_failed: bool = option("keep the project copy of every failing Vue case on disk for debugging (its path "
                               "is the record's kept_workspace)", False, flag=True, aliases=("--keep-failed",))
    # The original's success criterion: a GPU model keeps its GPU busy (80 % or more).
    gpu_threshold: float = option("warn when mean GPU use during a model's Vue cases is under this percentage", 80.0,
                                  minimum=0)


def _load(options: Options, context: LoadContext) -> list[Item]:
    return load(samples=context.samples, seed=context.seed)


SUITE = Suite("vue", load=_load, options=Options, reports=("harness.report.vue_report",),
              description="Vue to TypeScript: type an untyped Vue 3 component, graded 0-10")
