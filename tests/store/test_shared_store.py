"""One MongoDB store shared by runs on several machines: two runs writing at once lose and
duplicate nothing, and `harness report` / `harness compare` read runs back from the store URI.

Against nx-27017 (a MongoDB wire-protocol server, tests/mongo_server.py) over real TCP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import BENCHMARKS, PROJECT, case

from harness.commands.cli import main as harness_cli
from harness.store import open_store

pymongo = pytest.importorskip("pymongo", reason="the MongoDB store needs the mongodb extra")

SAMPLE_ITEMS = 32  # fixtures/mmlu


def _run(tmp: Path, run_id: str, uri: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", str(BENCHMARKS / "test_mmlu.py"), "-q", "-p", "no:cacheprovider",
         "--models", "oracle", "--store", uri, "--run-id", run_id, "--report-dir", str(tmp / run_id),
         "--monitor-interval", "0", *extra],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_runs_at_once_into_one_store_lose_and_duplicate_nothing(tmp_path: Path, mongo_uri: str) -> None:
    runs = {run_id: _run(tmp_path, run_id, mongo_uri) for run_id in ("machine-a", "machine-b")}
    for process in runs.values():
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        for run_id in runs:
            stored = [c["case_id"] for c in db.cases.find({"run_id": run_id})]
            local = [json.loads(line)["case_id"]
                     for line in (tmp_path / run_id / run_id / "results.jsonl").read_text().splitlines()]
            assert len(stored) == len(set(stored)) == SAMPLE_ITEMS
            assert sorted(stored) == sorted(local)
        assert db.cases.count_documents({}) == 2 * SAMPLE_ITEMS
        finished = {r["run_id"]: r.get("finished") for r in db.runs.find({})}
        assert set(finished) == set(runs) and all(finished.values())
    finally:
        client.close()


def test_writers_on_separate_connections_at_once(mongo_uri: str) -> None:
    # Two writers, one run id (a run split across machines), overlapping cases and retries.
    def write(offset: int) -> None:
        store = open_store(mongo_uri)
        try:
            for n in range(offset, offset + 60):
                store.add(case("shared", n))
                store.add(case("shared", n))  # a retried write
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(offset,)) for offset in (0, 30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = open_store(mongo_uri)
    try:
        ids = [r["case_id"] for r in store.records("shared")]
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == 90  # cases 0..89, each once


def test_report_and_compare_read_runs_from_the_store(tmp_path: Path, mongo_uri: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for run_id in ("r-a", "r-b"):
        process = _run(tmp_path, run_id, mongo_uri, "--samples", "4")
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, out
    # Make one case of r-b wrong in the store, as a different model version might.
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        first = client.get_default_database().cases.find_one({"run_id": "r-b"})
        client.get_default_database().cases.update_one({"_id": first["_id"]},
                                                       {"$set": {"correct": False, "status": "wrong"}})
    finally:
        client.close()
    out_dir = tmp_path / "rendered"
    assert harness_cli(["report", "--store", mongo_uri, "--report-dir", str(out_dir), "r-a"]) == 0
    out = capsys.readouterr().out
    assert "4 records of run r-a from the store" in out and "oracle" in out
    summary = json.loads((out_dir / "r-a" / "summary.json").read_text())
    [row] = summary["summary"]
    assert (row["model"], row["items"], row["accuracy"]) == ("oracle", 4, 1.0)
    assert summary["metadata"]["run_id"] == "r-a"
    assert harness_cli(["compare", "--store", mongo_uri, "r-a", "r-b"]) == 0
    out = capsys.readouterr().out
    assert "4 cases in both runs" in out and "1.000   0.750  -0.250" in out
    assert harness_cli(["report", "--store", mongo_uri, "no-such-run"]) == 2
    assert "run 'no-such-run' has no records in the store" in capsys.readouterr().err
