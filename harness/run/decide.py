"""--decide A,B: run A and B on items in a seeded random order and stop once the answer is known.

The statistics are in harness/report/sequential.py (why the error stays at alpha at every look).
Each suite of the run is its own decision at alpha, on its own items (`pytest benchmarks --decide
A,B` decides every suite separately). This module is the run's side of it, and how the processes
of a run share what is decided:

- Order. Every process that collects (a plain run's only process, each pytest-xdist worker) keeps
  the cases of A and B on items both of them have, ordered by a seeded digest of (suite, item)
  (`order_key`): A's case, then B's, item after item. Other cases are deselected. It writes the
  plan (each suite's items in that order) to <run>/decide-plan.json; the workers of an xdist run
  collect the same cases, so they write the same plan (each by an atomic replace).
- Counting. Only the controller sees every record (they ride on the reports). It feeds the test in
  the plan's order: an item counts once both its records have arrived and every item before it
  has counted, so the test sees exactly a prefix of the seeded order, however xdist interleaves
  the cases. Feeding records as they arrive would not do: which case finishes first can depend on
  the answer (a wrong answer may be a longer one), and the stream would no longer be a random
  order. An item with an error or timeout on either side is left out (the paired reports do the
  same) and the population shrinks by one.
- Skipping. When a suite is decided the controller writes <run>/decision.json (atomic replace);
  before each case (pytest_runtest_setup, before any fixture loads a model) a process reads it and
  skips a case of a decided suite, the decision as the reason. Under xdist a case a worker had
  already started (pytest-xdist hands each worker a few cases ahead) still finishes: its record is
  kept and counted in `ran_not_counted`, but it never changes the decision (the test stopped at
  its prefix).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.core.record import CaseRecord
from harness.core.settings import Settings
from harness.report.sequential import Decision, SequentialPairedTest

PLAN_FILE = "decide-plan.json"
DECISION_FILE = "decision.json"
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """One side of the decision: a model (or a pair `small+large`) under a strategy."""

    strategy: str
    model: str

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`model` (the single strategy) or `strategy:model`, as the paired reports name variants."""
        strategy, _, model = text.rpartition(":")
        return cls(strategy or "single", model)

    def matches(self, strategy: str, model: str) -> bool:
        return (strategy, model) == (self.strategy, self.model)

    def __str__(self) -> str:
        return self.model if self.strategy == "single" else f"{self.strategy}:{self.model}"


def variants(settings: Settings) -> tuple[Variant, Variant] | None:
    if settings.decide is None:
        return None
    a, b = settings.decide
    return Variant.parse(a), Variant.parse(b)


def order_key(seed: int, suite: str, item_id: str) -> str:
    """An item's place in the seeded random order: a digest, so every process agrees on it."""
    return hashlib.sha256(f"{seed}\0{suite}\0{item_id}".encode()).hexdigest()


def plan_cases(cases: Sequence[T], describe: Callable[[T], tuple[str, str, str, str] | None],
               pair: tuple[Variant, Variant], seed: int) -> tuple[list[T], list[T], dict[str, list[str]]]:
    """(cases kept in the seeded order, cases deselected, each suite's items in that order).

    `describe(case)` gives (suite, item id, strategy, model) or None for a case of no suite."""
    a, b = pair
    sides: dict[tuple[str, str], dict[str, T]] = {}
    dropped: list[T] = []
    for case in cases:
        about = describe(case)
        side = None
        if about is not None:
            suite, item_id, strategy, model = about
            side = "a" if a.matches(strategy, model) else "b" if b.matches(strategy, model) else None
        if about is None or side is None or side in sides.get((about[0], about[1]), {}):
            dropped.append(case)
            continue
        sides.setdefault((about[0], about[1]), {})[side] = case
    kept: list[T] = []
    plan: dict[str, list[str]] = {}
    for (suite, item_id), found in sorted(sides.items(), key=lambda kv: order_key(seed, *kv[0])):
        if len(found) < 2:  # an item only one side answers can never be paired
            dropped += found.values()
            continue
        kept += [found["a"], found["b"]]
        plan.setdefault(suite, []).append(item_id)
    return kept, dropped, plan


def write_json(path: Path, data: Any) -> None:
    """Replace the file at once: a reader sees the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def decided_reason(run_dir: Path, suite: str) -> str | None:
    """Why a case of `suite` need not run (the decision), or None while it is open."""
    try:
        data = json.loads((run_dir / DECISION_FILE).read_text())
    except (OSError, ValueError):
        return None
    entry = data.get("suites", {}).get(suite)
    if not entry or entry.get("decision") in (None, "undecided"):
        return None
    return f"decided (--decide): {entry['sentence']}"


class Decider:
    """The controller's running state: one sequential test per suite, fed in the plan's order."""

    def __init__(self, run_dir: Path, settings: Settings) -> None:
        pair = variants(settings)
        assert pair is not None
        self.a, self.b = pair
        self.run_dir = run_dir
        self.margin = settings.margin / 100.0
        self.alpha = settings.decide_alpha
        self.seed = settings.seed
        self.plan: dict[str, list[str]] | None = None
        self.records: dict[tuple[str, str], dict[str, CaseRecord]] = {}
        self.tests: dict[str, SequentialPairedTest] = {}
        self.position: dict[str, int] = {}
        # A file left by an earlier run of this id would skip cases before anything is decided.
        for name in (PLAN_FILE, DECISION_FILE):
            (run_dir / name).unlink(missing_ok=True)

    def side(self, record: CaseRecord) -> str | None:
        if self.a.matches(record.strategy, record.model):
            return "a"
        if self.b.matches(record.strategy, record.model):
            return "b"
        return None

    def add(self, record: CaseRecord) -> None:
        side = self.side(record)
        if side is None:
            return
        self.records.setdefault((record.suite, record.item_id), {})[side] = record
        self.advance(record.suite)

    def load_plan(self) -> bool:
        if self.plan is None:
            try:
                self.plan = json.loads((self.run_dir / PLAN_FILE).read_text())["suites"]
            except (OSError, ValueError, KeyError):
                return False
        return True

    def advance_all(self) -> None:
        if self.load_plan():
            assert self.plan is not None
            for suite in self.plan:
                self.advance(suite)

    def advance(self, suite: str) -> None:
        """Feed the test every item of the plan whose pair is complete, in order, up to the first gap."""
        if not self.load_plan():
            return  # collection has not written the plan yet: records wait
        assert self.plan is not None
        order = self.plan.get(suite)
        if order is None:
            return
        test = self.tests.setdefault(suite, SequentialPairedTest(self.margin, self.alpha, len(order)))
        at = self.position.get(suite, 0)
        while at < len(order) and test.decision is None:
            pair = self.records.get((suite, order[at]), {})
            if len(pair) < 2:
                break
            if pair["a"].scored and pair["b"].scored:
                test.add(pair["a"].counts_correct, pair["b"].counts_correct)
            else:
                test.drop()
            at += 1
        self.position[suite] = at
        if test.decision is not None:
            self.write()

    def summary(self) -> dict[str, Any]:
        suites = {}
        for suite, test in sorted(self.tests.items()):
            decision: Decision = test.state()
            counted = set((self.plan or {}).get(suite, [])[:self.position.get(suite, 0)])
            # Cases run beyond the items the test counted: under xdist, those a worker had started
            # (or finished out of order) before the decision was written.
            beyond = sum(len(sides) for (name, item), sides in self.records.items()
                         if name == suite and item not in counted)
            suites[suite] = {**decision.to_dict(), "sentence": decision.sentence(str(self.a), str(self.b)),
                             "ran_not_counted": beyond}
        return {"a": str(self.a), "b": str(self.b), "margin_points": 100 * self.margin, "alpha": self.alpha,
                "seed": self.seed, "method": "testing by betting, valid at every look (harness/report/sequential.py)",
                "suites": suites}

    def write(self) -> None:
        write_json(self.run_dir / DECISION_FILE, self.summary())

    def lines(self) -> list[str]:
        out = []
        for suite, entry in self.summary()["suites"].items():
            fixed = entry["fixed_size_items"]
            planned = f"; a fixed-size test would need {fixed} items" if fixed else ""
            out.append(f"{suite}: {entry['sentence']}{planned}")
        return out
