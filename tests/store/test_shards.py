"""One run split over machines: shards into the shared MongoDB store, merged by `harness report --store`.

Real processes (`pytest benchmarks ... --shard i/3`, started at once) into nx-27017 (a MongoDB
wire-protocol server, tests/mongo_server.py) over TCP; the oracle model, so answers are known.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import BENCHMARKS, PROJECT

from harness.commands.cli import main as harness_cli

pymongo = pytest.importorskip("pymongo", reason="the MongoDB store needs the mongodb extra")

TARGETS = ("test_mmlu.py", "test_extraction.py")
CASES = 32 + 8  # fixtures/mmlu and fixtures/extraction with the oracle
# Figures that are measured (time, resources), so two runs of the same cases never share them.
MEASURED = {"mean_latency_s", "tokens_per_s", "wall_s", "latency_p50_s", "latency_p95_s", "model_s", "cpu_s",
            "cpu_percent_mean", "rss_peak_mb", "gpu_util_mean", "gpu_util_peak", "gpu_memory_mean_mb",
            "gpu_memory_peak_mb", "gpu_energy_j", "cpu_user_s", "cpu_system_s", "prompt_tokens_per_s",
            "completion_tokens_per_s", "prompt_engine_share", "decode_engine_share"}
# A record's fields that say what was asked and answered (not when, where or how fast).
ANSWER = ("case_id", "suite", "item_id", "model", "backend", "strategy", "prediction", "reference", "scores",
          "correct", "status", "error", "usage", "item")

SIGKILL_PLUGIN = """
import os, signal
import pytest

seen = []

@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if report.when == "teardown":
        seen.append(report.nodeid)
        if len(seen) == {cases}:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def start(tmp: Path, uri: str, *args: str, report_dir: Path | None = None, env: dict[str, str] | None = None,
          targets: tuple[str, ...] = TARGETS) -> subprocess.Popen[str]:
    paths = [os.environ.get("PYTHONPATH", ""), str(PROJECT), str(tmp)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *(str(BENCHMARKS / t) for t in targets), "-q", "-p", "no:cacheprovider",
         "--models", "oracle", "--store", uri, "--report-dir", str(report_dir or tmp / "reports"),
         "--monitor-interval", "0", *args],
        cwd=PROJECT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str], expected: int = 0) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == expected, out
    return out


def stored(uri: str, run_id: str) -> list[dict[str, Any]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return list(client.get_default_database().cases.find({"run_id": run_id}, {"_id": 0}))
    finally:
        client.close()


def answers(records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {r["case_id"]: tuple(json.dumps(r.get(k), sort_keys=True) for k in ANSWER) for r in records}


def unmeasured(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in MEASURED} for row in summary["summary"]]


def test_three_shards_at_once_merge_into_the_one_process_run(tmp_path: Path, mongo_uri: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Shard 1 runs two xdist workers: -n works inside a shard (its workers report the fingerprint).
    shards = [start(tmp_path, mongo_uri, "--run-id", "split", "--shard", f"{i}/3",
                    *(["-n", "2"] if i == 1 else []), report_dir=tmp_path / f"machine-{i}") for i in range(3)]
    whole = start(tmp_path, mongo_uri, "--run-id", "whole", report_dir=tmp_path / "one")
    outs = [finish(p) for p in shards]
    finish(whole)
    ran = [int(out.split(" passed")[0].split()[-1]) for out in outs]
    assert sum(ran) == CASES and all(n > 0 for n in ran), outs  # each shard ran its share

    split = stored(mongo_uri, "split")
    assert len(split) == len({r["case_id"] for r in split}) == CASES  # every case exactly once
    assert answers(split) == answers(stored(mongo_uri, "whole"))  # case for case

    out_dir = tmp_path / "merged"
    assert harness_cli(["report", "--store", mongo_uri, "--report-dir", str(out_dir), "split"]) == 0
    assert "merged 3 shards" in capsys.readouterr().out
    one = json.loads((tmp_path / "one" / "whole" / "summary.json").read_text())
    merged = json.loads((out_dir / "split" / "summary.json").read_text())
    assert unmeasured(merged) == unmeasured(one)  # figure for figure, but for the measured times
    assert [(r["model"], r["suite"], r["items"], r["accuracy"]) for r in merged["summary"]] == \
        [("oracle", "extraction", 8, 1.0), ("oracle", "mmlu", 32, 1.0)]
    entries = merged["metadata"]["shards"]
    assert [s["index"] for s in entries] == [0, 1, 2] and sum(s["cases"] for s in entries) == CASES
    # Each shard names its machine, the code and the items; all three agree here.
    assert all(s["hostname"] and s["machine"]["cpus"] and s["finished"] for s in entries)
    assert len({(s["code_fingerprint"], s["items_fingerprint"], s["git_commit"]) for s in entries}) == 1
    assert entries[0]["items_fingerprint"] and entries[0]["code_fingerprint"]
    assert merged["metadata"]["cases"] == CASES
    for name in ("report.html", "summary.csv", "summary.md", "extraction/metrics.csv", "mmlu"):
        assert (out_dir / "split" / name).exists(), name
    html = (out_dir / "split" / "report.html").read_text()
    assert html.count("astronomy") >= 8
    # The merged summary is the run's summary in the store too.
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        run = client.get_default_database().runs.find_one({"run_id": "split"})
    finally:
        client.close()
    assert run is not None and [r["items"] for r in run["summary"]] == [8, 32]


def test_a_shard_killed_with_sigkill_resumes_with_exactly_the_missing_cases(tmp_path: Path, mongo_uri: str) -> None:
    (tmp_path / "sigkill.py").write_text(SIGKILL_PLUGIN.format(cases=4))
    for i in (0, 2):
        finish(start(tmp_path, mongo_uri, "--run-id", "r", "--shard", f"{i}/3"))
    killed = start(tmp_path, mongo_uri, "--run-id", "r", "--shard", "1/3", "-p", "sigkill")
    finish(killed, expected=-9)
    before = {r["case_id"]: r for r in stored(mongo_uri, "r")}
    assert harness_cli(["report", "--store", mongo_uri, "--report-dir", str(tmp_path / "m"), "r"]) == 2

    # The shard again on another machine (no local folder): its answered cases come from the store.
    out = finish(start(tmp_path, mongo_uri, "--resume", "r", "--shard", "1/3", report_dir=tmp_path / "elsewhere"))
    after = stored(mongo_uri, "r")
    assert len(after) == len({r["case_id"] for r in after}) == CASES
    added = [r for r in after if r["case_id"] not in before]
    skipped = int(out.split(" skipped")[0].split()[-1])
    assert skipped == 4 and len(added) == CASES - len(before)
    assert all(r == before[r["case_id"]] for r in after if r["case_id"] in before)  # not asked again
    assert harness_cli(["report", "--store", mongo_uri, "--report-dir", str(tmp_path / "m"), "r"]) == 0
    summary = json.loads((tmp_path / "m" / "r" / "summary.json").read_text())
    assert sum(row["items"] for row in summary["summary"]) == CASES


def test_a_shard_of_other_data_is_refused_at_merge(tmp_path: Path, mongo_uri: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mmlu"
    shutil.copytree(PROJECT / "fixtures" / "mmlu", data)
    args = ("--run-id", "mixed", "--mmlu-data", str(data), "--samples", "8")
    finish(start(tmp_path, mongo_uri, *args, "--shard", "0/2", targets=("test_mmlu.py",)))
    # The data changes between the shards (a reference edited): same options, other items.
    for table in (data / "test").glob("*.csv"):
        lines = table.read_text().splitlines()
        table.write_text("\n".join(line[:-1] + ("B" if line.endswith("A") else "A") for line in lines) + "\n")
    finish(start(tmp_path, mongo_uri, *args, "--shard", "1/2", targets=("test_mmlu.py",)))
    assert harness_cli(["report", "--store", mongo_uri, "--report-dir", str(tmp_path / "m"), "mixed"]) == 2
    err = capsys.readouterr().err
    assert "run 'mixed': shard 1/2" in err and "ran other items than shard 0/2" in err
    assert "items fingerprint" in err and not (tmp_path / "m" / "mixed" / "summary.json").exists()


def test_sharding_needs_the_shared_run_id(tmp_path: Path, mongo_uri: str) -> None:
    out = finish(start(tmp_path, mongo_uri, "--shard", "0/2", targets=("test_mmlu.py",)), expected=4)
    assert "shard 0/2 (from --shard) needs the run id all shards share: give --run-id RUN" in out
    out = finish(start(tmp_path, mongo_uri, env={"JOB_COMPLETION_INDEX": "1"}, targets=("test_mmlu.py",)),
                 expected=4)
    assert "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of shards" in out


@pytest.mark.parametrize("kind", ["sqlite", "mongodb"])
def test_shard_entries_are_upserted_by_index(kind: str, tmp_path: Path, mongo_uri: str) -> None:
    from harness.store import open_store

    store = open_store(mongo_uri if kind == "mongodb" else str(tmp_path / "s.sqlite"))
    try:
        store.put_shard("r", {"index": 1, "count": 2, "finished": None, "settings": {"seed": 0}})
        store.put_shard("r", {"index": 0, "count": 2, "finished": "t0"})
        store.put_shard("r", {"index": 1, "count": 2, "finished": "t1", "settings": {"seed": 0}})  # resumed
        store.put_shard("other", {"index": 0, "count": 1, "finished": "t"})
        assert store.shards("r") == [{"index": 0, "count": 2, "finished": "t0"},
                                     {"index": 1, "count": 2, "finished": "t1", "settings": {"seed": 0}}]
        assert store.shards("none") == []
    finally:
        store.close()
