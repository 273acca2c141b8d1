"""The `harness` command: re-render a finished run, compare two runs, list the models, import tasks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.registry import DEFAULT_REGISTRY, RegistryError, availability, load_registry
from harness.report.tables import scoreboard
from harness.report.write import read_results, render_run
from harness.report.aggregate import summarize


def _report(args: argparse.Namespace) -> int:
    rows = render_run(Path(args.run_dir))
    print(scoreboard(rows))
    print(f"rewrote summary.json, summary.csv and summary.md in {args.run_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Accuracy of each (model, suite, strategy) in run A and run B, on the items both ran."""
    a = {r["case_id"]: r for r in read_results(Path(args.a) / "results.jsonl")}
    b = {r["case_id"]: r for r in read_results(Path(args.b) / "results.jsonl")}
    shared = sorted(set(a) & set(b))
    print(f"{len(shared)} cases in both runs ({len(a)} in A, {len(b)} in B)")
    rows_a = {(r.model, r.suite, r.strategy): r for r in summarize(a[c] for c in shared)}
    rows_b = {(r.model, r.suite, r.strategy): r for r in summarize(b[c] for c in shared)}
    print(f"{'model':<24} {'suite':<10} {'strategy':<10} {'acc A':>7} {'acc B':>7} {'delta':>7}")
    for key in sorted(rows_a):
        ra, rb = rows_a[key], rows_b.get(key)
        acc_a = ra.accuracy
        acc_b = rb.accuracy if rb else None
        delta = f"{acc_b - acc_a:+.3f}" if acc_a is not None and acc_b is not None else "-"
        fa = f"{acc_a:.3f}" if acc_a is not None else "-"
        fb = f"{acc_b:.3f}" if acc_b is not None else "-"
        print(f"{key[0]:<24} {key[1]:<10} {key[2]:<10} {fa:>7} {fb:>7} {delta:>7}")
    changed = [c for c in shared if a[c].get("correct") != b[c].get("correct")]
    print(f"{len(changed)} cases changed correctness")
    return 0


def _models(args: argparse.Namespace) -> int:
    files = [Path(args.models_file)] if args.models_file else []
    registry = load_registry([DEFAULT_REGISTRY, *files])
    rows = []
    for spec in registry.values():
        reason = availability(spec)
        rows.append({"name": spec.name, "backend": spec.backend, "model": spec.model,
                     "tiers": list(spec.tiers), "default": spec.default,
                     "runs_here": reason is None, "why_not": reason})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        where = "runs here" if row["runs_here"] else f"not here: {row['why_not']}"
        star = "*" if row["default"] else " "
        print(f"{star} {row['name']:<16} {row['backend']:<12} {','.join(row['tiers']):<22} {where}")
    print("* = in the default selection when it runs here")
    return 0


def _import_tasks(args: argparse.Namespace) -> int:
    """A suite's items into the `tasks` collection of a MongoDB store, upserted by (suite, split, id)."""
    from harness.store import open_store

    if not args.store.lower().startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(f"--store {args.store!r}: tasks are kept only in a mongodb:// store")
    store = open_store(args.store)  # without the mongodb extra, a ValueError that names it
    try:
        from harness.store.mongo import import_tasks, load_suite

        split, items = load_suite(args.suite, args.data, args.split)
        written, new = import_tasks(store, args.suite, split, items)  # type: ignore[arg-type]
        print(f"{written} {args.suite} items ({split}) in tasks of {store!r}: {new} new, "
              f"{written - new} replaced")
    finally:
        store.close()
    return 0


def _rescore(args: argparse.Namespace) -> int:
    """Extraction metrics, predictions CSVs and plots again from stored predictions: no inference."""
    from harness.report import extraction_metrics  # its libraries load only for this command

    model = Path(args.bertscore_model) if args.bertscore_model else None
    rows = extraction_metrics.rescore(Path(args.run_dir), bertscore_model=model)
    folder = Path(args.run_dir) / extraction_metrics.FOLDER
    print(f"{len(rows)} (model, field) rows: rewrote {folder / extraction_metrics.METRICS_CSV}, "
          f"the predictions CSVs and {folder / 'plots'}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Checks of this machine; exit 1 when something the default run needs is missing."""
    from harness.doctor import render, run_checks

    findings = run_checks(Path(args.models_file) if args.models_file else None)
    print(render(findings))
    registry = load_registry([DEFAULT_REGISTRY])
    essential = {"version", "pytest", "psutil"} | {n for n, m in registry.items() if m.default}
    broken = [f for f in findings if not f.ok and f.name in essential]
    failed = sum(not f.ok for f in findings)
    print(f"\n{len(findings) - failed} ok, {failed} not available here"
          + (f"; the default run needs: {', '.join(f.name for f in broken)}" if broken else
             "; the default run can go ahead"))
    return 1 if broken else 0


def _chat(args: argparse.Namespace) -> int:
    """An interactive chat; problems (model, files) come back as one line, not a traceback."""
    from harness.chat import ChatError, run

    try:
        return run(args.model, args.memory, load=args.load, save=args.save, models_file=args.models_file,
                   system=args.system, max_tokens=args.max_tokens)
    except ChatError as exc:
        raise ValueError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="re-render the summaries of a finished run from results.jsonl")
    p.add_argument("run_dir")
    p.set_defaults(func=_report)
    p = sub.add_parser("compare", help="compare two runs on the cases both ran")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=_compare)
    p = sub.add_parser("models", help="list the registry and what can run on this machine")
    p.add_argument("--models-file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_models)
    p = sub.add_parser("rescore", help="recompute a run's extraction metrics and plots from its "
                                      "stored predictions, without inference")
    p.add_argument("run_dir")
    p.add_argument("--bertscore-model", help="a local model folder for BERTScore (default: the run's)")
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
