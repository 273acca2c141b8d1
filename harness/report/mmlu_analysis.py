"""The MMLU analysis: per subject and per model, with intervals, time, and the errors across models.

Written into <run>/mmlu/ at the end of a run holding MMLU records (and by `harness report`):

  analysis.json   per model: accuracy with its 95 % interval, a flag where the interval includes
                  chance (25 %: four choices), wall/CPU/GPU time; per subject and model the same;
                  the errors: questions every model misses, pairwise overlap of wrong answers,
                  hardest and easiest subjects, subjects hard for every model (each near chance)
                  and how far the models agree on the subjects' order (Kendall's W, Spearman)
  subjects.csv    one line per (subject, variant): items, correct, accuracy, interval, times
  heatmap.png     subjects x models accuracy;  accuracy.png: overall accuracy with intervals and
                  the chance line;  efficiency.png: accuracy against mean time per question;
  time.png        real time against CPU time (user and system) and GPU busy time per model, and
                  wall time per model and subject

Every figure is a row of the one aggregation (report/aggregate.py: Group.on(items).row) on a
subject's items; the subject is the record's `subject` tag (the MMLU Suite declares it: `tags`),
data carried on the record, never read out of an item id.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.record import CaseRecord
from harness.report.aggregate import Group, SummaryRow
from harness.report.hooks import RunData, hookimpl
from harness.report.stats import near_chance

SUITE = "mmlu"
FOLDER = "mmlu"
CHANCE = 0.25  # four choices
NEAR_CHANCE = 0.10  # "near chance": at most 35 % right (or an interval that includes 25 %)
TAG = "subject"
UNTAGGED = "(no subject tag)"  # records written before suites tagged their items


def subject_of(record: CaseRecord) -> str:
    return record.tags.get(TAG) or UNTAGGED


def _figures(row: SummaryRow) -> dict[str, Any]:
    return {"items": row.items, "scored": row.scored, "correct": row.correct, "accuracy": row.accuracy,
            "ci_low": row.ci_low, "ci_high": row.ci_high, "errors": row.errors,
            "chance_in_interval": near_chance(row.ci_low, row.ci_high, CHANCE),
            "wall_s": row.wall_s, "mean_latency_s": row.mean_latency_s, "cpu_s": row.cpu_s,
            "cpu_user_s": row.cpu_user_s, "cpu_system_s": row.cpu_system_s,
            "model_s": row.model_s, "gpu_util_mean": row.gpu_util_mean, "gpu_energy_j": row.gpu_energy_j}


def analyse(groups: Sequence[Group]) -> dict[str, Any]:
    # Each group's records split by subject in one pass (57 subjects: a pass per subject was
    # most of this report's time per case).
    split: dict[str, dict[str, list[str]]] = {}
    for g in groups:
        for r in g.records:
            split.setdefault(subject_of(r), {}).setdefault(g.variant, []).append(r.item_id)
    per_model = {g.variant: _figures(g.row) for g in groups}
    per_subject: dict[str, dict[str, Any]] = {}
    for subject in sorted(split):
        per_subject[subject] = {g.variant: _figures(g.on(split[subject][g.variant]).row)
                                for g in groups if g.variant in split[subject]}
    return {"chance": CHANCE, "models": per_model, "subjects": per_subject, "errors": errors(groups, per_subject)}


def errors(groups: Sequence[Group], per_subject: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Where the models go wrong together: items scored by every variant that none got right, the
    overlap of each two variants' wrong answers (count and Jaccard), hardest and easiest subjects
    by mean accuracy over the variants."""
    wrong = {g.variant: {r.item_id for r in g.records if r.scored and not r.counts_correct} for g in groups}
    scored = [{r.item_id for r in g.records if r.scored} for g in groups]
    common = set.intersection(*scored) if scored else set()
    missed = sorted(i for i in common if all(i in w for w in wrong.values())) if len(groups) > 1 else []
    overlap = []
    for a, b in itertools.combinations(sorted(wrong), 2):
        both = wrong[a] & wrong[b] & common
        either = (wrong[a] | wrong[b]) & common
        overlap.append({"a": a, "b": b, "both_wrong": len(both), "either_wrong": len(either),
                        "jaccard": len(both) / len(either) if either else None})
    means = {}
    for subject, variants in per_subject.items():
        values = [v["accuracy"] for v in variants.values() if v["accuracy"] is not None]
        if values:
            means[subject] = sum(values) / len(values)
    ranked = sorted(means, key=lambda s: (means[s], s))
    k = max(1, min(5, len(ranked) // 2))  # the two lists never share a subject (but with one)
    return {"missed_by_every_model": missed, "common_items": len(common), "wrong_overlap": overlap,
            "subject_mean_accuracy": means, "hardest_subjects": ranked[:k],
            "easiest_subjects": list(reversed(ranked[-k:])),
            "hard_for_every_model": hard_for_every_model(per_subject, len(groups)),
            "rank_agreement": rank_agreement(per_subject)}


def subject_near_chance(figures: dict[str, Any]) -> bool:
    """A model is near chance on a subject where its accuracy is within NEAR_CHANCE of 25 % or
    below it, or its 95 % interval still includes 25 %."""
    accuracy = figures.get("accuracy")
    return accuracy is not None and (accuracy <= CHANCE + NEAR_CHANCE or bool(figures.get("chance_in_interval")))


def hard_for_every_model(per_subject: dict[str, dict[str, Any]], variants: int) -> list[str]:
    """Subjects on which every model of the run (at least two) is near chance: a gap in all of
    them, or questions that do not discriminate, rather than one model's weakness."""
    if variants < 2:
        return []
    return sorted(subject for subject, by_variant in per_subject.items()
                  if len(by_variant) == variants and all(subject_near_chance(f) for f in by_variant.values()))


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_agreement(per_subject: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How far the models agree on which subjects are hard: Kendall's W over the subjects every
    model answered (1: the same order for all, 0: no agreement), with the tie correction, and
    Spearman's rho for each two models. None where fewer than two models or subjects."""
    variants = sorted({v for by_variant in per_subject.values() for v in by_variant})
    subjects = sorted(s for s, by_variant in per_subject.items()
                      if all(by_variant.get(v, {}).get("accuracy") is not None for v in variants))
    out: dict[str, Any] = {"subjects": len(subjects), "kendall_w": None, "spearman": []}
    if len(variants) < 2 or len(subjects) < 2:
        return out
    ranks = {v: _ranks([per_subject[s][v]["accuracy"] for s in subjects]) for v in variants}
    m, n = len(variants), len(subjects)
    totals = [sum(ranks[v][i] for v in variants) for i in range(n)]
    mean_total = sum(totals) / n
    spread = sum((t - mean_total) ** 2 for t in totals)
    ties = sum(c**3 - c for v in variants for c in Counter(ranks[v]).values())
    denominator = m * m * (n**3 - n) - m * ties
    out["kendall_w"] = 12 * spread / denominator if denominator > 0 else None
    for a, b in itertools.combinations(variants, 2):
        out["spearman"].append({"a": a, "b": b, "rho": _pearson(ranks[a], ranks[b])})
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sx = sum((a - mx) ** 2 for a in x) ** 0.5
    sy = sum((b - my) ** 2 for b in y) ** 0.5
    if sx == 0 or sy == 0:
        return None  # one model scores every subject the same: no order to agree with
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)


def _csv(path: Path, analysis: dict[str, Any]) -> None:
    names = ["subject", "variant", "items", "scored", "correct", "accuracy", "ci_low", "ci_high",
             "chance_in_interval", "wall_s", "cpu_s", "cpu_user_s", "cpu_system_s", "model_s", "gpu_util_mean",
             "gpu_energy_j"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for subject, variants in sorted(analysis["subjects"].items()):
            for variant, f in sorted(variants.items()):
                writer.writerow([subject, variant] + ["" if f.get(n) is None else f[n] for n in names[2:]])


def write(run_dir: Path, groups: Sequence[Group]) -> Path | None:
    if not groups:
        return None
    folder = run_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    analysis = analyse(groups)
    (folder / "analysis.json").write_text(json.dumps(analysis, indent=2, sort_keys=True) + "\n")
    _csv(folder / "subjects.csv", analysis)
    from harness.report.mmlu_plots import plot_all  # matplotlib only when plotting

    plot_all(folder, analysis)
    return folder


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    write(run.run_dir, run.suite_groups(SUITE))
