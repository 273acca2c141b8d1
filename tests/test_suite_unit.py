"""A suite as one registered unit (harness/suites/unit.py): found through entry points like a
third-party package's, its options named with its prefix, its item tags read from the item."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.settings import defaults, option, options
from harness.suites import unit
from harness.suites.base import Item
from harness.suites.unit import LoadContext, Suite

TOY = '''
from dataclasses import dataclass

from harness.api import Item, Suite, option


@dataclass(frozen=True)
class Options:
    level: int = option("how hard", 1, minimum=1)


SUITE = Suite("toy", load=lambda options, context: [Item("a", {"topic": "x"}, "1")], options=Options,
              tags=("topic",))
'''


def install_package(root: Path, entry: str) -> None:
    """A distribution on sys.path with a `harness.suites` entry point, as pip would leave it."""
    (root / "toys").mkdir()
    (root / "toys" / "__init__.py").write_text("")
    (root / "toys" / "toy.py").write_text(TOY)
    (root / "toys" / "helpers.py").write_text("VALUE = 1\n")  # a module without a SUITE is not one
    info = root / "toys-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toys\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[harness.suites]\n{entry}\n")


@pytest.mark.parametrize("entry", ["toy = toys.toy:SUITE", "anything = toys"], ids=["suite", "package"])
def test_a_third_party_suite_registers_through_the_entry_point_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    install_package(tmp_path, entry)
    monkeypatch.syspath_prepend(str(tmp_path))
    suites = {s.name: s for s in unit.entry_point_suites()}
    assert {"mmlu", "gsm8k", "toy"} <= set(suites)
    toy = suites["toy"]
    assert [o.cli for o in options(toy.options, toy.option_prefix)] == ["--toy-level"]
    assert toy.item_tags(Item("a", {"topic": "x", "other": 1}, "1")) == {"topic": "x"}


def test_an_entry_point_named_unlike_its_suite_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_package(tmp_path, "wrong = toys.toy:SUITE")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="harness.suites:wrong = 'toys.toy:SUITE' holds the suite 'toy'"):
        unit.entry_point_suites()


def test_options_take_the_prefix_and_tags_come_from_the_item() -> None:
    @dataclass(frozen=True)
    class Options:
        shots: int = option("examples", 2, minimum=0)

    suite = Suite("my_suite", load=lambda o, c: [], options=Options, prefix="mine", tags=("lang", "missing"))
    (opt,) = options(Options, suite.option_prefix)
    assert (opt.cli, opt.env, opt.ini, opt.key) == ("--mine-shots", "HARNESS_MINE_SHOTS", "harness_mine_shots",
                                                    "mine_shots")
    assert suite.settings(defaults(Options, "mine")) == {"mine_shots": 2}
    assert suite.item_tags(Item("1", {"lang": "de"}, "x")) == {"lang": "de"}
    with pytest.raises(ValueError, match="must be letters, digits and underscores"):
        Suite("two words", load=lambda o, c: [])
    assert LoadContext().samples is None


def test_harness_suites_must_hold_suites() -> None:
    class Plugin:
        harness_suites = ["not a suite"]

    with pytest.raises(TypeError, match="harness_suites holds 'not a suite', not a harness Suite"):
        unit.declared_in(Plugin())
