"""A suite as one unit: one registered Suite object declares its name, options, loader, item tags and reports.

Everything the harness needs to know about a suite, beside its benchmark module (the test that asks
the model), is this one declaration, so a new suite is one module plus its benchmark file:

    @dataclass(frozen=True)
    class ToyOptions:
        data: str | None = option("toy data file", shown_default="the sample")
        shots: int = option("worked examples in the prompt", 0, minimum=0)

    SUITE = Suite("toy", load=load_items, options=ToyOptions, tags=("topic",),
                  reports=("my_package.toy_report",))

- options: a frozen dataclass of `option(...)` fields (harness/core/settings.py), named with the suite's
  prefix (the name unless given): `--toy-shots`, `HARNESS_TOY_SHOTS`, `harness_toy_shots`;
- load(options, context) -> items: `context` holds the harness-wide samples, seed and root folder;
- tags: keys of `item.input` whose values every record of the item carries in `record.tags` (MMLU's
  subject), so reports group by them without reading ids;
- reports: modules with a `pytest_harness_report(run)` hook (harness/report/hooks.py), registered
  when the suite is; `run.suites_reported_by(module)` tells a report which suites declared it.

A Suite is a pytest plugin object (it adds its options), registered in one of these ways:
- an entry point in the group `harness.suites`: `name = "package.module:SUITE"`, or a package
  whose modules hold a `SUITE` each (`builtin = "harness.suites"`: the built-in suites register so,
  as a third-party package does, and a new module there needs no other edit);
- a root conftest.py or a `-p` plugin module with `harness_suites = [SUITE, ...]`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.core.settings import add_options, options, resolve
from harness.suites.base import Item

ENTRY_POINT_GROUP = "harness.suites"
DISTRIBUTION = "llm-bench-harness"
BUILTIN = "harness.suites"  # the built-in suites' entry point value (pyproject.toml)
# A module or plugin holding suites under this name registers them (a conftest.py, `-p module`).
MODULE_ATTRIBUTE = "harness_suites"


@dataclass(frozen=True)
class LoadContext:
    """What a loader gets besides its own options: the harness-wide choices of which items."""

    samples: int | None = None
    seed: int = 0
    rootdir: Path = field(default_factory=Path.cwd)
    # Reads the items `harness import-tasks` kept in a store: (uri, suite, split or None) -> the
    # stored documents (item_id, input, reference, meta). The run passes the store's reader, so a
    # suite whose data option names a mongodb:// URI reads its tasks from there without
    # importing the store itself (suites sit below the stores).
    tasks: Callable[[str, str, str | None], list[dict[str, Any]]] | None = None


@dataclass(frozen=True, eq=False)
class Suite:
    name: str
    load: Callable[[Any, LoadContext], Sequence[Item]]
    options: type | None = None
    prefix: str | None = None
    tags: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"suite name {self.name!r} must be letters, digits and underscores (it is a marker)")
        # Where this suite's resolved options live on a session's config.stash.
        object.__setattr__(self, "_values_key", pytest.StashKey[Any]())

    @property
    def option_prefix(self) -> str:
        return self.prefix if self.prefix is not None else self.name

    # -- as a pytest plugin ---------------------------------------------------------------------
    def pytest_addoption(self, parser: pytest.Parser) -> None:
        if self.options is not None:
            add_options(parser, self.options, self.option_prefix,
                        group=(f"harness-{self.name}", f"LLM benchmark harness: the {self.name} suite"))

    # -- what the harness asks of it ------------------------------------------------------------
    def values(self, config: pytest.Config) -> Any:
        """This suite's options, resolved once per session (command line > environment > ini > default);
        a bad value stops the run with exit code 4, naming the option and where it came from."""
        key: pytest.StashKey[Any] = getattr(self, "_values_key")  # noqa: B009 - set in __post_init__
        if key not in config.stash:
            config.stash[key] = resolve(config, self.options, self.option_prefix) if self.options else None
        return config.stash[key]

    def settings(self, values: Any) -> dict[str, Any]:
        """The options as run metadata keeps them: prefixed keys, paths as text."""
        if self.options is None or values is None:
            return {}
        found = {}
        for opt in options(self.options, self.option_prefix):
            value = getattr(values, opt.name)
            found[opt.key] = str(value) if isinstance(value, Path) else value
        return found

    def items(self, config: pytest.Config, samples: int | None, seed: int,
              tasks: Callable[[str, str, str | None], list[dict[str, Any]]] | None = None) -> list[Item]:
        return list(self.load(self.values(config), LoadContext(samples, seed, config.rootpath, tasks)))

    def item_tags(self, item: Item) -> dict[str, str]:
        return {tag: str(item.input[tag]) for tag in self.tags if item.input.get(tag) is not None}


# -- finding the registered suites ----------------------------------------------------------------
def entry_point_suites() -> list[Suite]:
    """The suites of the `harness.suites` entry point group, in name order.

    An entry point names one Suite (`package.module:SUITE`, the entry point's name is the suite's)
    or a package (`package.suites`), whose every module with a `SUITE` is a suite: the built-in ones
    register so, and a new module in harness/suites/ is a new suite with no other edit."""
    points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    found = [(ep.name, ep.value) for ep in points]
    # (By its value, not its distribution's name: reading a distribution's metadata costs every
    # pytest session tens of milliseconds.)
    if not any(ep.value == BUILTIN for ep in points):
        # An editable install made before the group existed keeps stale metadata: read the built-ins'
        # entry point from the checkout's own pyproject.toml instead.
        found += _checkout_entry_points()
    suites: dict[str, Suite] = {}
    for name, value in sorted(dict(found).items()):
        for suite in _load(name, value):
            if suite.name in suites:
                raise ValueError(f"entry point {ENTRY_POINT_GROUP}:{name} = {value!r}: a second suite named "
                                 f"{suite.name!r}")
            suites[suite.name] = suite
    return [suites[name] for name in sorted(suites)]


def _checkout_entry_points() -> list[tuple[str, str]]:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if not pyproject.is_file():
        return []
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    if data.get("project", {}).get("name") != DISTRIBUTION:
        return []
    group = data["project"].get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return [(str(k), str(v)) for k, v in group.items()]


def _load(name: str, value: str) -> list[Suite]:
    module_name, _, attribute = value.partition(":")
    module = importlib.import_module(module_name)
    if not attribute and hasattr(module, "__path__"):  # a package of suite modules
        found = [getattr(importlib.import_module(f"{module_name}.{info.name}"), "SUITE", None)
                 for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda i: i.name)]
        return [suite for suite in found if isinstance(suite, Suite)]
    suite = getattr(module, attribute or "SUITE")
    if not isinstance(suite, Suite):
        raise TypeError(f"{value} is a {type(suite).__name__}, not a harness Suite")
    if suite.name != name:
        raise ValueError(f"entry point {ENTRY_POINT_GROUP}:{name} = {value!r} holds the suite {suite.name!r}")
    return [suite]


def declared_in(plugin: object) -> list[Suite]:
    """Suites a plugin module declares under `harness_suites` (a conftest.py, a `-p` module)."""
    held = getattr(plugin, MODULE_ATTRIBUTE, None) if not isinstance(plugin, Suite) else None
    if held is None:
        return []
    listed = list(held) if isinstance(held, Iterable) else [held]
    wrong = [s for s in listed if not isinstance(s, Suite)]
    if wrong:
        raise TypeError(f"{getattr(plugin, '__file__', plugin)}: {MODULE_ATTRIBUTE} holds {wrong[0]!r}, "
                        "not a harness Suite")
    return listed


def registered(pluginmanager: Any) -> dict[str, Suite]:
    """The suites registered with this pytest session, by name in name order (a stable order, which
    pytest-xdist needs: every worker must collect the same cases in the same order)."""
    found = {p.name: p for p in pluginmanager.get_plugins() if isinstance(p, Suite)}
    return {name: found[name] for name in sorted(found)}


def register(pluginmanager: Any, suite: Suite) -> None:
    """Register a suite (its options join the command line); one name, one suite."""
    known = registered(pluginmanager).get(suite.name)
    if known is suite:
        return
    if known is not None:
        raise ValueError(f"two suites are named {suite.name!r}: {known.load!r} and {suite.load!r}")
    pluginmanager.register(suite, f"harness-suite-{suite.name}")


def suite_reports(suites: Iterable[Suite]) -> dict[str, tuple[str, ...]]:
    """report module -> the suites that declare it."""
    found: dict[str, list[str]] = {}
    for suite in suites:
        for report in suite.reports:
            found.setdefault(report, []).append(suite.name)
    return {report: tuple(names) for report, names in found.items()}
