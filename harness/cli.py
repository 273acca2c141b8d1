"""The `harness` command: re-render a finished run, compare two runs, list the models, import tasks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.registry import DEFAULT_REGISTRY, RegistryError, availability, load_registry
from harness.report.tables import scoreboard
from harness.report.write import latest_per_case, read_results, render_run, write_summary
from harness.report.aggregate import summarize


def _store_run(store_uri: str, run_id: str) -> tuple[list[dict], dict]:
    """(records, metadata) of one run read back from a result store (SQLite path or mongodb://)."""
    from harness.store import open_store

    store = open_store(store_uri)
    try:
        records = store.records(run_id)
        runs = {run["run_id"]: run for run in store.runs()}
    finally:
        store.close()
    if not records:
        known = ", ".join(sorted(runs)[-5:]) or "none"
        raise ValueError(f"run {run_id!r} has no records in the store {store!r} (latest runs: {known})")
    return records, dict(runs.get(run_id, {}).get("metadata") or {})


def _records(ref: str, store_uri: str | None) -> list[dict]:
    """A run's records: a run folder, or with --store a run id in that store."""
    if store_uri is not None and not Path(ref).is_dir():
        return _store_run(store_uri, ref)[0]
    return read_results(Path(ref) / "results.jsonl")


def _report(args: argparse.Namespace) -> int:
    if args.store is None:
        rows = render_run(Path(args.run_dir))
        print(scoreboard(rows))
        print(f"rewrote summary.json, summary.csv and summary.md in {args.run_dir}")
        return 0
    records, metadata = _store_run(args.store, args.run_dir)
    out = Path(args.report_dir) / args.run_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = write_summary(out, latest_per_case(records), metadata)
    print(scoreboard(rows))
    print(f"{len(records)} records of run {args.run_dir} from the store; wrote summary.json, summary.csv "
          f"and summary.md in {out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Accuracy of each (model, suite, strategy) in run A and run B, on the items both ran."""
    a = {r["case_id"]: r for r in _records(args.a, args.store)}
    b = {r["case_id"]: r for r in _records(args.b, args.store)}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="re-render the summaries of a finished run from results.jsonl, "
                                      "or with --store from a result store")
    p.add_argument("run_dir", help="a run folder, or with --store the run id")
    p.add_argument("--store", help="read the run from this store: a SQLite path or mongodb://host:port/db")
    p.add_argument("--report-dir", default="reports", help="with --store: where <run id>/summary.* go")
    p.set_defaults(func=_report)
    p = sub.add_parser("compare", help="compare two runs on the cases both ran")
    p.add_argument("a", help="a run folder, or with --store a run id")
    p.add_argument("b", help="a run folder, or with --store a run id")
    p.add_argument("--store", help="read run ids from this store: a SQLite path or mongodb://host:port/db")
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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError, RegistryError) as exc:
        print(f"harness {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
