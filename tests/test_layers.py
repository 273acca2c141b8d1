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
# backend does not import another). A package's own entry is the layer of a module in it not named
# here: the highest its modules reach, so a new module is held to the strictest rule until placed.
LAYERS: dict[str, int] = {
    "harness": 0,
    # core/: the data and rules every layer shares
    "harness.core": 0,
    # models/: which models, where they are served, one call with its cache and timeout
    "harness.models": 2, "harness.models.registry": 0, "harness.models.endpoints": 0,
    "harness.models.cache": 1, "harness.models.call": 2,
    "harness.backends.base": 0,
    "harness.backends": 1, "harness.report": 1, "harness.store": 1, "harness.suites": 1,
    # sandbox/: one group (the sandbox, its isolation levels, cgroups, outcome and worker)
    "harness.sandbox": 1,
    # monitor/: the sampler is a peer of the backends; the per-case windows belong to the run
    "harness.monitor": 3, "harness.monitor.sampler": 1, "harness.monitor.cases": 3,
    "harness.strategies": 3,
    # run/: the pytest run's machinery, from the pure helpers (shard, internals) to the plugin
    "harness.run": 4, "harness.run.shard": 0, "harness.run.internals": 0,
    "harness.run.session": 3, "harness.run.controller": 3, "harness.run.selection": 3,
    "harness.run.upcoming": 3, "harness.run.decide": 3,
    "harness.run.plugin": 4, "harness.run.task_cases": 4,
    "harness.api": 4,
    # commands/: the `harness` command and its subcommands
    "harness.commands": 4,
}
# Layer-1 groups that may import each other: none since the sandbox's isolation levels moved into
# the sandbox's own package (one group). Kept as the one place an exception would be written.
ALLOWED_PEERS: set[tuple[str, str]] = set()
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
