"""A run's files: results.jsonl as cases finish, then summary.{json,csv,md} and metadata.json.

results.jsonl is the run's source of truth: written one line per case as soon as the case is
answered, so a crash or Ctrl-C keeps everything finished so far, and `harness report` can rebuild
every summary file from it (render_run).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from harness.core.record import CaseRecord
from harness.report.aggregate import SummaryRow, aggregate, latest
from harness.report.engine_share import engine_markdown, with_engine
from harness.report.paired import headlines, paired
from harness.report.tables import markdown, markdown_sections, write_csv

RESULTS_FILE = "results.jsonl"
METADATA_FILE = "metadata.json"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def _drop_partial_line(path: Path) -> None:
    """Cut a fragment left by a crash mid-write off the end of a JSONL file.

    Appending after such a fragment would glue the next record onto it and turn a tolerable
    truncated last line into a corrupt line in the middle of the file.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1  # 0 when the whole file is one fragment
    warnings.warn(f"{path}: dropping a partial last line ({len(data) - keep} bytes) before appending")
    with open(path, "r+b") as handle:
        handle.truncate(keep)


class ResultsLog:
    """Appends case records to <run_dir>/results.jsonl, one flushed JSON line each."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self.path)
        self._file: TextIO | None = open(self.path, "a", encoding="utf-8")

    def append(self, record: CaseRecord | Mapping[str, Any], line: str | None = None) -> None:
        """`line`: the record's JSON as to_json() writes it, where the caller has it already."""
        if self._file is None:
            raise ValueError(f"{self.path}: the results log is closed")
        # One write call per line, then flush: the line reaches the OS before the next case runs,
        # so a crash of this process loses at most the line being written.
        if line is None:
            data = record.to_dict() if isinstance(record, CaseRecord) else record
            line = json.dumps(data, sort_keys=True, default=str)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results.jsonl file, in the order they were written.

    A last line that does not parse is what a crash mid-write leaves: it is skipped with a
    warning. A bad line anywhere else means the file was damaged some other way, and silently
    dropping answered cases would skew the scores, so that raises ValueError.
    """
    path = Path(path)
    # split("\n"), not splitlines(): the latter also breaks on U+2028 and friends, which may sit
    # unescaped inside a JSON string written by another tool.
    lines = path.read_text(encoding="utf-8").split("\n")
    last = max((i for i, text in enumerate(lines) if text.strip()), default=-1)
    records: list[dict[str, Any]] = []
    for index, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if index == last:
                warnings.warn(f"{path}:{index + 1}: skipping a truncated last line ({exc.msg})")
                continue
            raise ValueError(f"{path}:{index + 1}: not a JSON line: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{index + 1}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def load_records(path: str | Path) -> list[CaseRecord]:
    """The typed records of a results.jsonl file (every one written, in order); a record that
    does not read names its line."""
    records = []
    for index, data in enumerate(read_results(path), start=1):
        try:
            records.append(CaseRecord.from_dict(data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: record {index} ({data.get('case_id', '?')}): {exc}") from None
    return records


def _write_text(path: Path, text: str) -> None:
    # Write beside the target, then rename: a reader (or a crash) never sees half a summary.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def model_loads(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each hosted model's load: seconds to load and RSS after load (the mean over its hosts: one
    per machine where the run's processes share it, as they do by default), its host starts and
    crashes, and for llama.cpp whether extra buffer types were in use."""
    loads: dict[str, dict[str, Any]] = {}
    for name, data in (metadata.get("backends") or {}).items():
        clients = [h for h in data.get("hosts") or [] if isinstance(h, Mapping)]
        if not clients:
            continue
        # Each process lists the host it used last; processes that shared one list it once each.
        hosts = list({h.get("pid") if h.get("pid") is not None else id(h): h for h in clients}.values())
        seconds = [float(h["load_s"]) for h in hosts if isinstance(h.get("load_s"), (int, float))]
        rss = [float(h["rss_after_load_mb"]) for h in hosts if isinstance(h.get("rss_after_load_mb"), (int, float))]
        loads[name] = {"load_s": sum(seconds) / len(seconds) if seconds else None,
                       "rss_after_load_mb": sum(rss) / len(rss) if rss else None,
                       "hosts": len(hosts), "starts": sum(int(h.get("starts") or 0) for h in clients),
                       "crashes": sum(int(h.get("crashes") or 0) for h in clients),
                       "extra_bufts": data.get("extra_bufts")}
    return loads


def _loads_markdown(loads: Mapping[str, Mapping[str, Any]]) -> str:
    if not loads:
        return ""
    lines = ["", "## Model hosts", "",
             "| model | load s | RSS after load MB | hosts | starts | crashes | extra bufts |",
             "|---|---:|---:|---:|---:|---:|---|"]

    def num(value: Any, digits: int) -> str:
        return "" if value is None else f"{float(value):.{digits}f}"

    for name, load in loads.items():
        lines.append(f"| {name} | {num(load['load_s'], 2)} | {num(load['rss_after_load_mb'], 0)} | {load['hosts']} | "
                     f"{load['starts']} | {load['crashes']} | {load.get('extra_bufts') or ''} |")
    return "\n".join(lines) + "\n"


def write_summary(
    run_dir: str | Path, records: Iterable[CaseRecord | Mapping[str, Any]], metadata: Mapping[str, Any]
) -> list[SummaryRow]:
    """Write summary.json, summary.csv, summary.md and metadata.json into run_dir.

    Returns the summary rows, so the caller can print the scoreboard without summarizing twice.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Normalize metadata through JSON first (paths to strings, tuples to lists) so rendering from
    # the live objects and from metadata.json read back later gives the same bytes.
    plain_metadata = json.loads(_json_text(dict(metadata)))
    records = list(records)
    groups = aggregate(records)
    rows = with_engine([group.row for group in groups], plain_metadata)
    shares = [share for group in groups for share in group.shares]
    heads, pairs = headlines(groups), paired(groups)
    loads = model_loads(plain_metadata)
    summary = {"metadata": plain_metadata, "models": loads,
               "summary": [row.to_dict() for row in rows],
               "per_model": [s.to_dict() for s in shares], "headlines": [h.to_dict() for h in heads],
               "paired": [p.to_dict() for p in pairs]}
    served = requests_per_endpoint(latest(records))
    if served:
        summary["endpoints"] = served
    _write_text(run_dir / METADATA_FILE, _json_text(plain_metadata))
    _write_text(run_dir / SUMMARY_JSON, _json_text(summary))
    _write_text(run_dir / SUMMARY_MD, markdown(rows, plain_metadata) + markdown_sections(rows, shares, heads, pairs)
                + _loads_markdown(loads) + engine_markdown(plain_metadata))
    temporary_csv = run_dir / (SUMMARY_CSV + ".tmp")
    write_csv(rows, temporary_csv)
    os.replace(temporary_csv, run_dir / SUMMARY_CSV)
    return rows


def requests_per_endpoint(records: Iterable[CaseRecord]) -> dict[str, dict[str, int]]:
    """model -> endpoint -> requests it answered, from the records of a model served by a pool."""
    served: dict[str, dict[str, int]] = {}
    for record in records:
        for url, n in (record.extra.get("endpoint_requests") or {}).items():
            per_model = served.setdefault(record.model, {})
            per_model[url] = per_model.get(url, 0) + int(n)
    return {model: dict(sorted(urls.items())) for model, urls in sorted(served.items())}


def read_run(run_dir: str | Path) -> tuple[list[CaseRecord], dict[str, Any]]:
    """A finished (or crashed) run's latest record per case and its metadata, from its folder."""
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    if not results.exists():
        raise FileNotFoundError(f"{results}: no results to report (is {run_dir} a run folder?)")
    metadata_path = run_dir / METADATA_FILE
    metadata: dict[str, Any] = {}
    if metadata_path.exists():
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    return latest(load_records(results)), metadata


def render_run(run_dir: str | Path) -> list[SummaryRow]:
    """Rebuild a finished (or crashed) run's summaries from results.jsonl and metadata.json."""
    records, metadata = read_run(run_dir)
    return write_summary(run_dir, records, metadata)
