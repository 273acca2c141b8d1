"""report.html and the compare page as a person sees them: in headless Chromium at 1280 px, driven
over the DevTools protocol (tests/browser.py): the verdict's text, no horizontal scrollbar,
sorting by a click, frontier labels apart, the flips of two runs, and a 28,084-case report's
size and time to interactive."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest
from browser import CHROMIUM, Browser
from page_records import known_pair, record, two_runs

from harness.core.record import CaseRecord
from harness.report import compare_page, html
from harness.report.hooks import RunData
from harness.report.paired import compare_runs

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

GPU = [{"samples": 4, "util_mean": 61.0, "util_peak": 97.0, "memory_mean_mb": 2100.0, "memory_peak_mb": 2400.0,
        "energy_j": 12.5}]


def wide_run() -> list[CaseRecord]:
    """What makes tables wide: long model names, a pair strategy with its shares and headline,
    priced models, GPU figures, two suites."""
    out = []
    small, large = "qwen2.5-coder-1.5b-instruct-q4_k_m", "gpt-4o-2024-08-06"
    for suite in ("gsm8k", "mmlu"):
        for i in range(24):
            out.append(record(small, i, i % 3 == 0, suite=suite, cpu=1.7, rss=1900.0))
            out.append(record(large, i, i % 5 != 0, suite=suite, cost=0.0031, cpu=0.2))
            pair = record(f"{small}+{large}", i, i % 4 != 0, suite=suite, strategy="cascade", cost=0.0012,
                          cpu=1.9, rss=1900.0, settled_by_small=i % 2 == 0,
                          per_model={small: {"calls": 1, "prompt_tokens": 310, "completion_tokens": 140,
                                             "model_s": 1.2},
                                     large: {"calls": i % 2, "prompt_tokens": 350 * (i % 2), "cost": 0.0012,
                                             "model_s": 0.4}})
            pair.resources["gpu"] = GPU
            out.append(pair)
    return out


def _rects_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


RECTS = """Array.from(document.querySelectorAll('svg.frontier')).map(function(svg){
  function box(e){ var r = e.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: e.textContent}; }
  return {labels: Array.from(svg.querySelectorAll('text.label')).map(box),
          points: Array.from(svg.querySelectorAll('circle')).map(box)}; })"""


def test_report_shows_the_verdict_of_a_known_paired_difference(tmp_path: Path) -> None:
    path = html.write(RunData.of(tmp_path, known_pair(), {"run_id": "known"}))
    with Browser(1280, 900) as browser:
        browser.open(path)
        shown = browser.js("Array.from(document.querySelectorAll('.verdict')).map(function(e){return e.textContent})")
        assert shown == ["mmlu: gemma3-270m-q4 is the most accurate, 62.5% of 32 items. Cheapest not "
                         "significantly less accurate: smollm2-135m: 6.2 points below gemma3-270m-q4 on mmlu "
                         "[-19, +7], p = 0.62, 32 items, at 68% of the CPU time and 60% of the memory."]
        assert browser.errors() == []


def test_report_at_1280_px_fits_sorts_and_keeps_labels_apart(tmp_path: Path) -> None:
    path = html.write(RunData.of(tmp_path, wide_run(), {"run_id": "wide"}))
    with Browser(1280, 900) as browser:
        browser.open(path)
        assert browser.js("document.body.getAttribute('data-ready')") == "1"
        widths = browser.js("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
        wrappers = browser.js("Array.from(document.querySelectorAll('.scroll')).filter(function(e){"
                              " return e.scrollWidth > e.clientWidth + 1; }).map(function(e){"
                              " return e.firstChild.id + ' ' + e.scrollWidth + '>' + e.clientWidth; })")
        assert wrappers == [], f"tables wider than the window: {wrappers}"

        def column(table: str, index: int) -> list[float]:
            values = browser.js(f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(function(r){{"
                                f" return r.cells[{index}].getAttribute('data-v'); }})")
            return [float(v) for v in values]

        heads = browser.js("Array.from(document.querySelectorAll('#scoreboard-table th')).map(function(h){"
                           " return h.textContent; })")
        accuracy = heads.index("accuracy")
        before = column("scoreboard-table", accuracy)
        browser.js(f"document.querySelectorAll('#scoreboard-table th')[{accuracy}].click()")
        assert column("scoreboard-table", accuracy) == sorted(before)
        browser.js(f"document.querySelectorAll('#scoreboard-table th')[{accuracy}].click()")
        assert column("scoreboard-table", accuracy) == sorted(before, reverse=True)
        assert browser.js(f"document.querySelectorAll('#scoreboard-table th')[{accuracy}]"
                          ".getAttribute('aria-sort')") == "descending"
        # every label of every frontier panel clear of the other labels and of every point
        panels = browser.js(RECTS)
        assert len(panels) >= 6
        for panel in panels:
            for a, b in itertools.combinations(panel["labels"], 2):
                assert not _rects_overlap(a, b), (a["text"], b["text"])
            for label in panel["labels"]:
                assert not any(_rects_overlap(label, point) for point in panel["points"]), label["text"]
        # a sorted view can be linked to
        browser.open(path, f"#sort=scoreboard-table:{accuracy}:desc")
        assert column("scoreboard-table", accuracy) == sorted(before, reverse=True)
        assert browser.errors() == []


def test_compare_page_shows_the_flips_of_two_runs(tmp_path: Path) -> None:
    a, b = two_runs()
    path = compare_page.write(tmp_path / "compare.html", [compare_page.Run("A", a), compare_page.Run("B", b)])
    with Browser(1280, 900) as browser:
        browser.open(path)
        rows = browser.js("Array.from(document.querySelectorAll('tr.flip')).map(function(r){"
                          " return [r.getAttribute('data-item'), r.cells[1].textContent, r.cells[3].textContent,"
                          " r.cells[4].textContent]; })")
        assert rows == [["q-01", "right → wrong", "A", "B"], ["q-02", "right → wrong", "A", "B"],
                        ["q-03", "wrong → right", "B", "A"]]
        deltas = browser.js("Array.from(document.querySelectorAll('#deltas-1 tbody td')).map(function(c){"
                            " return c.textContent; })")
        [stats] = compare_runs(a, b)  # the figures of `harness compare`, as the page formats them
        interval = f"[{100 * (stats.ci_low or 0):+.0f}, {100 * (stats.ci_high or 0):+.0f}]"
        assert deltas[:9] == ["mmlu", "single:m", "single:m", "4", "75.0%", "50.0%", "-25.0", interval, "1.00"]
        assert interval == "[-81, +47]"
        widths = browser.js("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1]
        assert browser.errors() == []


def mmlu_test_split(items: int = 14042, models: tuple[str, ...] = ("gemma3-270m-q4", "smollm2-135m"),
                    seed: int = 0) -> list[CaseRecord]:
    """Records the size of a whole MMLU test split run: questions of MMLU's length (460 characters
    with the choices, on average), four log-likelihoods, timings and resources."""
    rng = random.Random(seed)
    words = "the of a to in is which following most best statement true false energy cell law market".split()
    out = []
    for i in range(items):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(10, 110))) + "?\n" + "\n".join(
            f"{letter}. " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for letter in "ABCD")
        reference = rng.choice("ABCD")
        for model, skill in zip(models, (0.45, 0.30)):
            answer = reference if rng.random() < skill else rng.choice("ABCD")
            values: dict[str, Any] = {letter: -rng.uniform(0.5, 6.0) for letter in "ABCD"}
            values[answer] = max(values.values()) + 0.1
            out.append(CaseRecord(
                run_id="big", case_id=f"benchmarks/test_mmlu.py::test_mmlu[{model}-s{i % 57}-{i}]", suite="mmlu",
                item_id=f"s{i % 57}-{i}", model=model, backend="llamacpp", mode="loglikelihood", prediction=answer,
                reference=reference, input_text=text, correct=answer == reference,
                status="ok" if answer == reference else "wrong", scores={"accuracy": float(answer == reference)},
                usage={"prompt_tokens": 120, "source": "tokenizer"},
                timings={"wall_s": rng.uniform(0.05, 0.4), "model_s": rng.uniform(0.04, 0.3)},
                resources={"cpu_s": rng.uniform(0.05, 0.6), "duration_s": 0.3, "rss_peak_mb": 300.0},
                extra={"loglikelihoods": values}))
    return out


def test_a_whole_mmlu_test_split_report_is_small_and_interactive_within_3_s(tmp_path: Path) -> None:
    records = mmlu_test_split()
    assert len(records) == 28084
    started = time.monotonic()
    path = html.write(RunData.of(tmp_path, records, {"run_id": "big"}))
    rendered = time.monotonic() - started
    size_mb = path.stat().st_size / 1e6
    with Browser(1280, 900) as browser:
        load_s = browser.open(path)
        ready_ms = browser.js("performance.getEntriesByName('items-ready')[0].startTime")
        assert browser.js("document.getElementById('f-count').textContent") == "14042 items, showing 1-50"
        assert browser.js("document.querySelectorAll('#items .item').length") == 50
        clicked = time.monotonic()
        browser.js("document.getElementById('f-next').click()")
        browser.js("var e = document.getElementById('f-verdict'); e.value = 'wrong';"
                   " e.dispatchEvent(new Event('change'))")
        filtered_s = time.monotonic() - clicked
        assert browser.js("document.getElementById('f-count').textContent").endswith("items, showing 1-50")
        assert browser.errors() == []
    print(f"\n28,084-case report: {size_mb:.1f} MB, rendered in {rendered:.1f} s; in Chromium: load event "
          f"{load_s:.2f} s, item browser interactive at {ready_ms / 1000:.2f} s, a page turn and a filter "
          f"over every item {filtered_s:.2f} s")
    assert size_mb < 25
    assert ready_ms < 3000
    assert filtered_s < 3
