"""report.html's parts as values: the verdict of a suite, the Pareto front and label placement of
the frontier plot, the tables' headers, formats and sort markup, and the page comparing runs."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from page_records import known_pair, record, two_runs

from harness.commands import cli
from harness.core.record import CaseRecord
from harness.report import compare_page, frontier, html, html_columns
from harness.report.aggregate import aggregate
from harness.report.hooks import RunData
from harness.report.html_table import number, percent
from harness.report.paired import compare_runs
from harness.report.verdict import suite_verdict, verdicts
from harness.report.write import ResultsLog


def test_verdict_names_the_cheapest_variant_not_significantly_less_accurate() -> None:
    [verdict] = verdicts(aggregate(known_pair()))
    assert (verdict.best, verdict.cheapest, verdict.measure) == ("gemma3-270m-q4", "smollm2-135m", "CPU time")
    assert verdict.sentence() == (
        "mmlu: gemma3-270m-q4 is the most accurate, 62.5% of 32 items. Cheapest not significantly less "
        "accurate: smollm2-135m: 6.2 points below gemma3-270m-q4 on mmlu [-19, +7], p = 0.62, 32 items, "
        "at 68% of the CPU time and 60% of the memory.")
    assert verdict.near_chance == []  # 62.5% [44, 78] and 56.2% [39, 72] are clear of 25%


def test_verdict_picks_the_best_when_every_cheaper_variant_is_significantly_worse() -> None:
    records = ([record("big", i, i < 30, cpu=2.0) for i in range(32)]
               + [record("small", i, i < 1, cpu=1.0) for i in range(32)])  # 3.1% [0.6, 16]: below chance
    [verdict] = verdicts(aggregate(records))
    assert verdict.cheapest == verdict.best == "big"
    assert verdict.sentence() == ("mmlu: big is the most accurate, 93.8% of 32 items; every variant of lower "
                                  "CPU time is significantly less accurate (small): pick big.")


def test_verdict_flags_variants_near_chance_from_the_number_of_choices() -> None:
    records = ([record("guesser", i, i % 4 == 0) for i in range(32)]
               + [record("knower", i, i < 28) for i in range(32)])
    [verdict] = verdicts(aggregate(records))
    assert verdict.chance == 0.25 and verdict.near_chance == ["guesser"]
    assert verdict.sentence().endswith("Near chance (25.0%): guesser; their intervals include a guesser's accuracy.")
    # three choices scored: chance is a third; an open-answer suite has no chance level to flag
    three = [record("m", i, i % 3 == 0, ll={"A": -1.0, "B": -2.0, "C": -3.0}) for i in range(30)]
    assert suite_verdict("mmlu", aggregate(three)).chance == pytest.approx(1 / 3)
    open_answers = [record("m", i, i < 2, suite="gsm8k") for i in range(30)]
    assert suite_verdict("gsm8k", aggregate(open_answers)).near_chance == []


def test_verdict_judges_priced_models_by_cost_and_names_strategies_where_a_suite_has_several() -> None:
    records = ([record("gpt", i, i < 20, cost=0.01) for i in range(20)]
               + [record("qwen+gpt", i, i < 19, cost=0.004, strategy="cascade") for i in range(20)])
    [verdict] = verdicts(aggregate(records))
    assert (verdict.best, verdict.cheapest, verdict.measure) == ("gpt (single)", "qwen+gpt (cascade)", "cost")
    assert verdict.ratios == {"cost": pytest.approx(0.4), "CPU time": pytest.approx(1.0), "memory": 1.0}
    assert "at 40% of the cost, 100% of the CPU time and 100% of the memory" in verdict.sentence()


def test_pareto_front_keeps_the_points_nothing_beats_on_both() -> None:
    points = [frontier.Point("a", 1.0, 0.5), frontier.Point("b", 2.0, 0.7), frontier.Point("c", 2.5, 0.6),
              frontier.Point("d", 3.0, 0.7), frontier.Point("e", 0.5, 0.2), frontier.Point("f", 1.0, 0.5)]
    # c: b is cheaper and better; d: b is as good and cheaper; a and f tie (neither beats the other)
    assert [points[i].label for i in frontier.pareto_front(points)] == ["e", "a", "f", "b"]


def test_labels_of_a_crowded_plot_overlap_neither_each_other_nor_a_point() -> None:
    anchors = [(300.0 + 4 * (i % 3), 150.0 + 5 * (i // 3)) for i in range(9)]
    labels = [f"variant-{i}-q4_k_m" for i in range(9)]
    boxes = frontier.place_labels(anchors, labels, (58.0, 16.0, 582.0, 294.0))
    for a, b in itertools.combinations(boxes, 2):
        assert not frontier._overlap(a, b), (a, b)
    r = frontier.RADIUS
    for box in boxes:
        assert all(not frontier._overlap(box, (x - r, y - r, x + r, y + r)) for x, y in anchors)
        assert 58 <= box[0] and box[2] <= 582 and 16 <= box[1] and box[3] <= 294


def test_a_measure_nobody_spent_gets_no_panel() -> None:
    free = [record("m1", i, i < 5) for i in range(8)] + [record("m2", i, i < 3, cpu=0.5) for i in range(8)]
    assert [title for title, _ in frontier.panels(aggregate(free))] == [
        "mean latency (s)", "CPU per item (s)", "peak memory (MB)"]
    priced = free + [record("api", i, i < 7, cost=0.002) for i in range(8)]
    panels = dict(frontier.panels(aggregate(priced)))
    assert [(p.label, p.x) for p in panels["cost per item ($)"]] == [("api", 0.002), ("m1", 0.0), ("m2", 0.0)]
    page = frontier.suite_frontier(aggregate(priced))
    assert page.count('<svg class="frontier"') == 4
    # the front: cost m1 and api (m2 costs nothing too, but scores less); latency and CPU m2 and api;
    # memory (all alike) api alone
    assert page.count('<circle class="on-front"') == 2 + 2 + 2 + 1


def test_tables_have_names_with_units_sort_markup_and_fold_the_detail() -> None:
    rows = [g.row for g in aggregate(known_pair())]
    page = html_columns.scoreboard("board", rows)
    main, detail = page.split("<details", 1)
    heads = re.findall(r"<th [^>]*>([^<]*)</th>", main)
    assert heads == ["suite", "model", "strategy", "items", "accuracy", "95% CI (%)", "errors", "latency mean (s)",
                     "latency p95 (s)", "CPU (s)", "peak RSS (MB)"]  # no cost column: nothing was priced
    assert main.count('<th class="sortable') == len(heads) and 'data-type="num" aria-sort="none"' in main
    assert '<td data-v="0.625">62.5%</td>' in main
    assert "<td data-v=\"64.0\">64.0 s</td>" in main  # CPU: 32 items x 2 s, formatted with its unit
    assert "tokens in" in detail and "GPU" not in page  # no GPU measured: no GPU columns at all


def test_page_counts_crashes_with_errors_and_shows_each_hosted_models_load(tmp_path: Path) -> None:
    crashed = replace(record("m", 2, False), status="crash", correct=None, prediction=None, error="host died",
                      crash={"model": "m", "signal": 11})
    records = [record("m", 0, True), record("m", 1, False), crashed,
               replace(record("m", 3, False), status="timeout", correct=None)]
    [row] = [g.row for g in aggregate(records)]
    assert (row.errors, row.crashes, row.scored) == (2, 1, 2)  # crash and timeout outside accuracy
    metadata = {"run_id": "r", "backends": {"m": {"extra_bufts": "off", "hosts": [
        {"load_s": 1.5, "rss_after_load_mb": 300.0, "starts": 2, "crashes": 1},
        {"load_s": 2.5, "rss_after_load_mb": 500.0, "starts": 1, "crashes": 0}]}}}
    page = html.render(RunData.of(tmp_path, records, metadata))
    assert '<td data-v="2.0">2 (1 crash)</td>' in page  # the errors cell, in the scoreboard
    assert re.search(r'<th [^>]*>crashes</th>', page)  # and a column of its own, folded
    hosts = page.split('id="hosts-table"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", hosts.replace("<wbr>", ""))
    assert cells == ["m", "2.00 s", "400 MB", "2", "3", "1", "off"]  # means over its two hosts
    data = re.search(r'<script type="application/json" id="item-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None
    [crash] = [a for i in json.loads(data.group(1))["items"] for a in i["answers"] if a["status"] == "crash"]
    assert (crash["verdict"], crash["answer"]) == ("error", "host died")  # the browser's error filter finds it
    assert "hosts-table" not in html.render(RunData.of(tmp_path, records, {"run_id": "r"}))


def test_numbers_are_formatted_to_their_precision() -> None:
    form = number(3)
    assert [form(v) for v in (0.000396, 0.0271, 1.5, 12.345, 123.4, 4541.2, 0)] == [
        "0.000396", "0.0271", "1.50", "12.3", "123", "4,541", "0"]
    assert percent(1)(0.28125) == "28.1%"


def test_compare_page_shows_deltas_and_flips_right_to_wrong_first() -> None:
    a, b = two_runs()
    page = compare_page.render([compare_page.Run("A", a), compare_page.Run("B", b)])
    [stats] = compare_runs(a, b)
    assert (stats.a_only, stats.b_only, stats.difference) == (2, 1, -0.25)
    assert "B − A: <b>-25.0 points</b>" in page and "2 right → wrong, 1 wrong → right" in page
    rows = re.findall(r'<tr class="flip (loss|gain)" data-item="([^"]+)"', page)
    assert rows == [("loss", "q-01"), ("loss", "q-02"), ("gain", "q-03")]
    # the change in each choice's log-likelihood, the reference (A) marked
    assert "A* -1.00 → -2.50  (-1.50)" in page and "B  -2.00 → -1.00  (+1.00)" in page
    assert "Log-likelihood of the reference choice: -0.375 on average" in page  # -1.5 over 4 items


def _write_run(folder: Path, records: list[CaseRecord]) -> None:
    with ResultsLog(folder) as log:
        for r in records:
            log.append(r)


def test_cli_writes_the_compare_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs()
    _write_run(tmp_path / "run-a", a)
    _write_run(tmp_path / "run-b", b)
    assert cli.main(["compare", str(tmp_path / "run-a"), str(tmp_path / "run-b"), "--html"]) == 0
    page = tmp_path / "compare-run-a-vs-run-b.html"
    assert capsys.readouterr().out.strip() == str(page)
    assert page.read_text(encoding="utf-8").count('<tr class="flip ') == 3
    out = tmp_path / "three.html"
    runs = ",".join(str(tmp_path / n) for n in ("run-a", "run-b", "run-a"))
    assert cli.main(["report", "--runs", runs, "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "run-a (A) → run-b (B)" in text and "run-a (A) → run-a#2 (B)" in text
    assert cli.main(["report", "--runs", str(tmp_path / "run-a")]) == 2
    assert "takes two or more runs" in capsys.readouterr().err
