"""The package's import graph: no cycles, and layers point down only (DESIGN.md, "The seams").

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support import PROJECT

PACKAGE = PROJECT / "harness"

# Higher layers may import lower ones, never the reverse. Within layer 1 the groups are peers that
# do not import each other (a report does not import a suite, a store does not import a suite, one
# backend does not import another).
LAYERS: dict[str, int] = {
    "harness": 0, "harness.record": 0, "harness.settings": 0, "harness.registry": 0, "harness.extraction_format": 0,
    "harness.endpoints": 0, "harness.shard": 0, "harness.transcript": 0, "harness.locations": 0,
    "harness.internals": 0,
    "harness.confidence": 0,
    "harness.backends.base": 0,
    "harness.backends": 1, "harness.report": 1, "harness.store": 1, "harness.sandbox": 1,
    "harness.isolation": 1, "harness.monitor": 1, "harness.cache": 1, "harness.suites": 1,
    "harness.call": 2,
    "harness.session": 3, "harness.controller": 3, "harness.strategies": 3, "harness.case_monitor": 3,
    "harness.selection": 3, "harness.upcoming": 3, "harness.decide": 3,
    "harness.plugin": 4, "harness.api": 4, "harness.task_cases": 4,
    "harness.cli": 4, "harness.doctor": 4, "harness.tasks": 4, "harness.chat": 4,
}
# Peers that may import each other: the sandbox and its isolation levels; a backend and the
# backends' shared helpers.
ALLOWED_PEERS = {("harness.sandbox", "harness.isolation")}
# A backend split in modules: the transformers backend and its loader; a model host's client
# (hosted), its server (host), the folder both agree on (host_place) and the probe's verdicts.
HALVES = {("harness.backends.transformers", "harness.backends.transformers_load"),
          ("harness.backends.hosted", "harness.backends.host"),
          ("harness.backends.hosted", "harness.backends.host_place"),
          ("harness.backends.hosted", "harness.backends.host_verdicts"),
          ("harness.backends.host", "harness.backends.host_place")}
SHARED_BACKEND_HELPERS = {"harness.backends", "harness.backends.modelfiles", "harness.backends.servers",
                          "harness.backends.toolcalls", "harness.backends.chat_format", "harness.backends.engine_rate"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes inside `if TYPE_CHECKING:`: names for the type checker, never imported at run time."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped |= {id(inner) for child in node.body for inner in ast.walk(child)}
    return skipped


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("harness")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in imports_of(path) if i in modules and i != name} for name, path in modules.items()}


def layer(module: str) -> tuple[str, int]:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return best, LAYERS[best]


def test_no_import_cycles() -> None:
    edges = graph()
    cycles = []

    def visit(node: str, path: list[str], seen: set[str]) -> None:
        for target in sorted(edges[node]):
            if target in path:
                cycles.append(path[path.index(target):] + [target])
            elif target not in seen:
                seen.add(target)
                visit(target, [*path, target], seen)

    for start in sorted(edges):
        visit(start, [start], {start})
    assert cycles == []


def test_layers_point_down_only() -> None:
    wrong = []
    for module, targets in graph().items():
        group, level = layer(module)
        for target in targets:
            target_group, target_level = layer(target)
            if target_level > level:
                wrong.append(f"{module} imports {target} (layer {level} -> {target_level})")
            elif target_level == level == 1 and group != target_group and (group, target_group) not in ALLOWED_PEERS:
                wrong.append(f"{module} imports its peer {target}")
            elif group == target_group == "harness.backends" and module.count(".") > 1 and \
                    target not in SHARED_BACKEND_HELPERS and not target.startswith(module):
                if (module, target) not in HALVES:
                    wrong.append(f"backend {module} imports another backend {target}")
    assert sorted(wrong) == []
