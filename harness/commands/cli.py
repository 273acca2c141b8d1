"""The `harness` command: re-render a finished run, compare two runs, list the models, import tasks."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from harness.core.locations import registry_files, report_dir
from harness.core.record import CaseRecord, as_records
from harness.models.registry import RegistryError, availability, load_registry
from harness.report.aggregate import latest
from harness.report.hooks import RunData, report_manager, run_reports
from harness.report.paired import compare_runs
from harness.report.tables import scoreboard, terminal_extras
from harness.report.write import read_run, write_summary


def _store_run(store_uri: str, run_id: str) -> tuple[list[CaseRecord], dict[str, Any]]:
    """(latest records, metadata) of one run read back from a result store (SQLite or mongodb://).
    A run split into shards is merged: its shards must agree (harness/report/merge.py)."""
    from harness.report.merge import check_shards, merged_metadata
    from harness.store import open_store

    store = open_store(store_uri)
    try:
        data = store.records(run_id)
        runs = {run["run_id"]: run for run in store.runs()}
        shards = store.shards(run_id)
    finally:
        store.close()
    if not data:
        known = ", ".join(sorted(runs)[-5:]) or "none"
        raise ValueError(f"run {run_id!r} has no records in the store {store!r} (latest runs: {known})")
    records, metadata = latest(as_records(data)), dict(runs.get(run_id, {}).get("metadata") or {})
    if shards:
        check_shards(run_id, shards)
        metadata = merged_metadata(metadata, shards, len(records))
    return records, metadata


def _run(ref: str, store_uri: str | None) -> tuple[list[CaseRecord], dict[str, Any]]:
    """A run's latest records and metadata: a run folder, or with --store a run id in that store."""
    if store_uri is not None and not Path(ref).is_dir():
        return _store_run(store_uri, ref)
    return read_run(Path(ref))


def _compare_page(refs: list[str], store_uri: str | None, out: str | None, report_dir: str) -> int:
    """One page comparing runs (report/compare_page.py), the first the baseline; prints its path."""
    from harness.report import compare_page

    runs = []
    for ref in refs:
        records, metadata = _run(ref, store_uri)
        runs.append(compare_page.Run(str(metadata.get("run_id") or Path(ref).name), records, metadata))
    if out is None:  # beside the first run's folder, else in the report folder
        folder = Path(refs[0]).parent if Path(refs[0]).is_dir() else Path(report_dir)
        out = str(folder / ("compare-" + "-vs-".join(Path(ref).name for ref in refs) + ".html"))
    print(compare_page.write(out, runs))
    return 0


def _report(args: argparse.Namespace) -> int:
    """Every file of a run again from its records: the summaries, then every report. With --store,
    the records come from the store and the files go to <report-dir>/<run id>. With --runs, one
    page comparing those runs instead."""
    if args.runs:
        refs = [ref for ref in args.runs.split(",") if ref]
        if len(refs) < 2 or args.run_dir:
            raise ValueError(f"--runs {args.runs!r}: takes two or more runs, comma-separated, and no run folder")
        return _compare_page(refs, args.store, args.out, args.report_dir)
    if not args.run_dir:
        raise ValueError("report: name a run folder (or a run id with --store), or --runs A,B")
    records, metadata = _run(args.run_dir, args.store)
    if args.store is not None and not Path(args.run_dir).is_dir():
        print(f"{len(records)} records of run {args.run_dir} from the store")
        args.run_dir = str(report_dir(args.report_dir, Path.cwd()) / args.run_dir)
        Path(args.run_dir).mkdir(parents=True, exist_ok=True)
    if args.html:  # only the page, from the files the run already has
        from harness.report import html

        print(html.write(RunData.of(Path(args.run_dir), records, metadata)))
        return 0
    rows = write_summary(args.run_dir, records, metadata)
    if metadata.get("shards") and args.store is not None:  # the merged run's summary, kept in the store
        from harness.store import open_store

        store = open_store(args.store)
        try:
            store.finish_run(str(metadata.get("run_id") or Path(args.run_dir).name), [r.to_dict() for r in rows])
        finally:
            store.close()
        print(f"merged {len(metadata['shards'])} shards from {', '.join(metadata['hosts'])}")
    failures = run_reports(report_manager(reports=_suite_reports(metadata)),
                           RunData.of(Path(args.run_dir), records, metadata))
    print(scoreboard(rows))
    print(terminal_extras(rows, records))
    print(f"rewrote summary.json, summary.csv, summary.md and the reports in {args.run_dir}")
    for failure in failures:
        print(f"harness report: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _suite_reports(metadata: dict[str, Any]) -> list[str]:
    """The reports the run's suites declared (metadata.json "suites"); for a run older than that,
    those of every suite installed here."""
    from harness.report.hooks import reports_of
    from harness.suites.unit import entry_point_suites

    return reports_of(metadata) or sorted({r for s in entry_point_suites() for r in s.reports})


def _compare(args: argparse.Namespace) -> int:
    """Each (suite, strategy, model) of run A against run B, cases matched by suite, strategy and
    item (not by test id, which names the model): the same model against itself where both runs
    have it, else every model of A against every model of B. Paired figures: accuracy of each on
    the items both scored, the difference with its 95 % interval, and the exact McNemar p-value."""
    if args.html:
        return _compare_page([args.a, args.b], args.store, args.out, "reports")
    records_a, records_b = _run(args.a, args.store)[0], _run(args.b, args.store)[0]
    results = compare_runs(records_a, records_b)
    matched = sum(r.items for r in results)
    print(f"{matched} cases in both runs ({len(records_a)} in A, {len(records_b)} in B)")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    print(f"{'suite':<10} {'A':<28} {'B':<28} {'items':>5} {'acc A':>7} {'acc B':>7} {'delta':>7} "
          f"{'95% CI':>16} {'p':>7}")
    for r in results:
        fa = f"{r.accuracy_a:.3f}" if r.accuracy_a is not None else "-"
        fb = f"{r.accuracy_b:.3f}" if r.accuracy_b is not None else "-"
        delta = f"{r.difference:+.3f}" if r.difference is not None else "-"
        interval = f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if r.ci_low is not None and r.ci_high is not None else "-"
        p = f"{r.p_value:.3g}" if r.p_value is not None else "-"
        print(f"{r.suite:<10} {r.a:<28} {r.b:<28} {r.items:>5} {fa:>7} {fb:>7} {delta:>7} {interval:>16} {p:>7}")
    changed = sum(r.a_only + r.b_only for r in results)
    print(f"{changed} cases changed correctness")
    return 0


def _parity(args: argparse.Namespace) -> int:
    """Run B against run A item by item: the same answers, or only the same score (report/parity.py)."""
    from harness.report.parity import parity, render

    records_a, records_b = _run(args.a, args.store)[0], _run(args.b, args.store)[0]
    results = parity(records_a, records_b)
    if not results:
        print(f"no suite, strategy and model in common between {args.a} and {args.b}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(render(results, flips=args.flips))
    return 0


def _models(args: argparse.Namespace) -> int:
    registry = load_registry(registry_files(args.models_file, Path.cwd()))
    rows = []
    for spec in registry.values():
        reason = availability(spec)
        rows.append({"name": spec.name, "backend": spec.backend, "model": spec.model,
                     "tiers": list(spec.tiers), "quantization": spec.quantization, "default": spec.default,
                     "runs_here": reason is None, "why_not": reason, "note": spec.note})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    name_width = max(len(str(row["name"])) for row in rows)
    for row in rows:
        where = "runs here" if row["runs_here"] else f"not here: {row['why_not']}"
        star = "*" if row["default"] else " "
        tiers = ",".join(str(t) for t in row["tiers"]) if isinstance(row["tiers"], list) else ""
        print(f"{star} {row['name']:<{name_width}} {row['backend']:<12} {tiers:<22} {where}")
    print("* = in the default selection when it runs here")
    return 0


def _import_tasks(args: argparse.Namespace) -> int:
    """A suite's items into the `tasks` collection of a MongoDB store, upserted by (suite, split, id)."""
    from harness.store import open_store

    if not args.store.lower().startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"--store {args.store!r}: tasks are kept only in a mongodb:// store")
    store = open_store(args.store)  # without the mongodb extra, a ValueError that names it
    try:
        from harness.commands.tasks import load_suite
        from harness.store.mongo import import_tasks

        split, items = load_suite(args.suite, args.data, args.split)
        written, new = import_tasks(store, args.suite, split, items)  # type: ignore[arg-type]
        print(f"{written} {args.suite} items ({split}) in tasks of {store!r}: {new} new, "
              f"{written - new} replaced")
    finally:
        store.close()
    return 0


def _rescore(args: argparse.Namespace) -> int:
    """Extraction metrics, predictions CSVs and plots again from stored predictions: no inference.
    A CSV file instead of a run folder: score its `pred_*` columns against its reference columns."""
    from harness.report import extraction_metrics, extraction_more  # their libraries load only here

    target = Path(args.run_dir)
    if target.is_file():
        rows = extraction_more.score_csv(target)
        out = target.with_name(target.stem + ".metrics.csv")
        names = sorted({k for row in rows for k in row} - {"model", "field"})
        with open(out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["model", "field", *names])
            for row in rows:
                writer.writerow([row["model"], row["field"], *("" if row.get(n) is None else row[n] for n in names)])
        for row in rows:
            print(f"{row['model']:<24} {row['field']:<20} n={row['n_total']:<4} valid={row['n_valid']:<4} "
                  f"chrF++ {row.get('chrf_invalid_as_empty', 0.0):6.2f} (invalid as empty) "
                  f"{row.get('chrf_valid_only', 0.0):6.2f} (valid only)")
        print(f"{len(rows)} (model, field) rows: wrote {out}")
        return 0
    metric_rows = extraction_metrics.rescore(target, bertscore_model=args.bertscore_model or None)
    records, _ = read_run(target)
    extraction_more.write(target, records)
    folder = target / extraction_metrics.FOLDER
    print(f"{len(metric_rows)} (model, field) rows: rewrote {folder / extraction_metrics.METRICS_CSV}, "
          f"the predictions CSVs and {folder / 'plots'}")
    return 0


def _routes(args: argparse.Namespace) -> int:
    """The routing lab (harness/report/routes.py) of a run where a small and a large model
    answered the same items: every threshold's accuracy, cost and share sent to the large model,
    and the cheapest that keeps --target of the large model's accuracy. Writes <run>/routes/."""
    from harness.report import routes

    records, metadata = _run(args.run_dir, args.store)
    run = RunData.of(Path(args.run_dir), records, metadata)
    results = routes.labs(run, args.small, args.large, args.target)
    if not results:
        raise ValueError(f"{args.run_dir}: no suite where the small model's single records carry a confidence "
                         "and both models answered the same items (name them with --small and --large, or "
                         "run with --small-model and --large-model)")
    if Path(args.run_dir).is_dir():
        routes.write(Path(args.run_dir), results)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for result in results:
        print(routes.markdown(result))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Checks of this machine; exit 1 when something the default run needs is missing."""
    from harness.commands.doctor import render, run_checks

    findings = run_checks(Path(args.models_file) if args.models_file else None)
    print(render(findings))
    registry = load_registry(registry_files(None, Path.cwd()))
    essential = {"version", "pytest", "psutil"} | {n for n, m in registry.items() if m.default}
    broken = [f for f in findings if not f.ok and f.name in essential]
    failed = sum(not f.ok for f in findings)
    print(f"\n{len(findings) - failed} ok, {failed} not available here"
          + (f"; the default run needs: {', '.join(f.name for f in broken)}" if broken else
             "; the default run can go ahead"))
    return 1 if broken else 0


def _chat(args: argparse.Namespace) -> int:
    """An interactive chat; problems (model, files) come back as one line, not a traceback."""
    from harness.commands.chat import ChatError, run

    try:
        return run(args.model, args.memory, load=args.load, save=args.save, models_file=args.models_file,
                   system=args.system, max_tokens=args.max_tokens, temperature=args.temperature,
                   top_p=args.top_p)
    except ChatError as exc:
        raise ValueError(str(exc)) from None


def _show(args: argparse.Namespace) -> int:
    """One case of a run: its status, the reason of a failure, and its whole conversation. CASE is
    the test id, or any part of it that names one case."""
    from harness.report.transcript_view import terminal

    records, _ = _run(args.run_dir, args.store)
    exact = [r for r in records if r.case_id == args.case or r.case_id.endswith(f"[{args.case}]")]
    found = exact or [r for r in records if args.case in r.case_id]
    if len(found) != 1:
        names = "\n  ".join(r.case_id for r in found[:20]) or "(none)"
        raise ValueError(f"{len(found)} cases of run {args.run_dir} match {args.case!r}; name one of:\n  {names}")
    print(terminal(found[0]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="re-render the summaries of a finished run from results.jsonl")
    p.add_argument("run_dir", nargs="?", help="a run folder, or with --store the run id")
    p.add_argument("--store", help="read the run from this store: a SQLite path or mongodb://host:port/db")
    p.add_argument("--report-dir", help="with --store: where <run id>/summary.* go (default: reports/ here)")
    p.add_argument("--html", action="store_true", help="write only report.html (the page of the run) and "
                                                        "print its path")
    p.add_argument("--runs", help="A,B[,C...]: write one page comparing these runs (the first the baseline)")
    p.add_argument("--out", help="with --runs: the page's path (default: beside the first run's folder)")
    p.set_defaults(func=_report)
    p = sub.add_parser("compare", help="compare two runs on the cases both ran")
    p.add_argument("a", help="a run folder, or with --store a run id")
    p.add_argument("b", help="a run folder, or with --store a run id")
    p.add_argument("--store", help="read run ids from this store: a SQLite path or mongodb://host:port/db")
    p.add_argument("--json", action="store_true", help="the paired figures as JSON")
    p.add_argument("--html", action="store_true", help="write one page comparing the runs (deltas, flipped "
                                                        "items, log-likelihood changes) and print its path")
    p.add_argument("--out", help="with --html: the page's path (default: beside run A's folder)")
    p.set_defaults(func=_compare)
    p = sub.add_parser("show", help="one case of a run in the terminal: status, reason, conversation")
    p.add_argument("run_dir", help="a run folder, or with --store the run id")
    p.add_argument("case", help="the case's test id, its [parameter], or a part that names one case")
    p.add_argument("--store", help="read the run from this store: a SQLite path or mongodb://host:port/db")
    p.set_defaults(func=_show)
    p = sub.add_parser("routes", help="the offline routing lab: every confidence threshold between a small and "
                                     "a large model, from a finished run, without running a model")
    p.add_argument("run_dir", help="a run folder, or with --store the run id")
    p.add_argument("--store", help="read the run from this store: a SQLite path or mongodb://host:port/db")
    p.add_argument("--small", help="the small model (default: the run's --small-model)")
    p.add_argument("--large", help="the large model (default: the run's --large-model)")
    p.add_argument("--target", type=float, help="the share of the large model's accuracy to keep (default: "
                                               "the run's --route-target, 0.95)")
    p.add_argument("--json", action="store_true", help="the lab as JSON")
    p.set_defaults(func=_routes)
    p = sub.add_parser("parity", help="two runs item by item: same answers, score difference with its paired "
                                      "interval, |delta log-likelihood| per choice, the flipped items")
    p.add_argument("a", help="a run folder, or with --store a run id")
    p.add_argument("b", help="a run folder, or with --store a run id")
    p.add_argument("--store", help="read run ids from this store: a SQLite path or mongodb://host:port/db")
    p.add_argument("--json", action="store_true", help="the parity figures as JSON")
    p.add_argument("--flips", type=int, default=20, help="flipped items listed per suite (default 20)")
    p.set_defaults(func=_parity)
    p = sub.add_parser("models", help="list the registry and what can run on this machine")
    p.add_argument("--models-file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)
    p = sub.add_parser("rescore", help="recompute a run's extraction metrics and plots from its "
                                      "stored predictions, without inference")
    p.add_argument("run_dir", help="a run folder, or a CSV with pred_<field> columns to score")
    p.add_argument("--bertscore-model", help="BERTScore's model: a folder, a Hugging Face id in the local cache, "
                                             "or none (default: the run's, else the shipped all-MiniLM-L6-v2)")
    p.set_defaults(func=_rescore)
    p = sub.add_parser("import-tasks", help="import a suite's items into the tasks collection of a "
                                           "MongoDB store (again: replaced, never duplicated)")
    p.add_argument("--suite", required=True, help="mmlu, mbpp, ...: a module of harness.suites")
    p.add_argument("--data", required=True, help="the suite's data, as its --<suite>-data option takes")
    p.add_argument("--split", help="the split to import (default: the suite loader's default)")
    p.add_argument("--store", required=True, help="mongodb://host:port/db")
    p.set_defaults(func=_import_tasks)
    p = sub.add_parser("doctor", help="check Python, packages, backends and models, GPUs, the code "
                                     "sandbox and Node, and say what to do about each failure")
    p.add_argument("--models-file")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("chat", help="chat with a model in the terminal, with a memory strategy; "
                                   "/help inside lists the commands")
    p.add_argument("--model", required=True, help="a registry model, by name")
    p.add_argument("--memory", default="full", help="full, none, window:N or budget:T (default full)")
    p.add_argument("--load", help="continue a conversation saved with /save or --save")
    p.add_argument("--save", help="save the conversation to this file when the chat ends")
    p.add_argument("--system", help="the system prompt of a new conversation")
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens of a reply (default 256)")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 for greedy (default: the "
                                                      "model's recommendation, else 0.7)")
    p.add_argument("--top-p", type=float, help="nucleus sampling's probability mass (default: the model's "
                                                "recommendation, else 0.9)")
    p.add_argument("--models-file")
    p.set_defaults(func=_chat)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError, RegistryError) as exc:
        print(f"harness {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
