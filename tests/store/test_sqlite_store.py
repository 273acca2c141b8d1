"""The SQLite store and open_store's URI parsing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from support import case

from harness.store import Store, open_store, sqlite_path
from harness.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "deep" / "folder" / "results.db")
    yield opened
    opened.close()


def test_creates_parent_folders_and_is_a_store(tmp_path: Path, store: SQLiteStore) -> None:
    assert (tmp_path / "deep" / "folder" / "results.db").is_file()
    assert isinstance(store, Store)


def test_round_trip(store: SQLiteStore) -> None:
    records = [case("r1", n) for n in range(5)]
    records[2] = case("r1", 2, status="wrong", correct=False, prediction="C")
    for rec in records:
        store.add(rec)
    assert store.records("r1") == records
    assert store.records("missing") == []


def test_indexed_columns_follow_the_record(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as s:
        s.add(case("r1", 1, status="error", correct=None))
        s.add(case("r1", 2, status="wrong", correct=False))
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT case_id, suite, model, strategy, item_id, status, correct FROM cases ORDER BY item_id"
        ).fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [
        ("benchmarks/test_mmlu.py::test_mmlu[tiny-1]", "mmlu", "tiny", "single", "1", "error", None),
        ("benchmarks/test_mmlu.py::test_mmlu[tiny-2]", "mmlu", "tiny", "single", "2", "wrong", 0),
    ]
    assert mode == "wal"


def test_upsert_does_not_duplicate(store: SQLiteStore) -> None:
    store.add(case("r1", 1))
    store.add(case("r1", 2))
    store.add(case("r1", 1, attempts=2, prediction="B", correct=False, status="wrong"))
    records = store.records("r1")
    assert len(records) == 2
    # The retried write replaced the first in place: order of first addition is kept.
    assert [r["item_id"] for r in records] == ["1", "2"]
    assert records[0]["prediction"] == "B" and records[0]["attempts"] == 2


def test_add_needs_run_and_case_ids(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="case_id"):
        store.add({"run_id": "r1"})


def test_two_runs_kept_apart(store: SQLiteStore) -> None:
    store.add(case("r1", 1))
    store.add(case("r2", 1, prediction="Z"))
    store.add(case("r2", 2))
    assert [r["prediction"] for r in store.records("r1")] == ["A"]
    assert [r["prediction"] for r in store.records("r2")] == ["Z", "A"]


def test_runs_metadata_and_finish(store: SQLiteStore) -> None:
    store.start_run("r1", {"started": "2024-01-01T00:00:00+00:00", "models": ["tiny"]})
    store.start_run("r2", {"started": "2024-02-01T00:00:00+00:00", "models": ["small"]})
    store.finish_run("r1", [{"model": "tiny", "accuracy": 0.5}])
    runs = store.runs()
    assert [r["run_id"] for r in runs] == ["r1", "r2"]
    assert runs[0]["started"] == "2024-01-01T00:00:00+00:00"
    assert runs[0]["metadata"] == {"started": "2024-01-01T00:00:00+00:00", "models": ["tiny"]}
    assert runs[0]["summary"] == [{"model": "tiny", "accuracy": 0.5}]
    assert runs[0]["finished"] is not None
    assert runs[1]["finished"] is None and runs[1]["summary"] is None


def test_start_run_again_keeps_first_start(store: SQLiteStore) -> None:
    store.start_run("r1", {"started": "2024-01-01T00:00:00+00:00", "try": 1})
    store.start_run("r1", {"started": "2024-03-01T00:00:00+00:00", "try": 2})
    (run,) = store.runs()
    assert run["started"] == "2024-01-01T00:00:00+00:00"
    assert run["metadata"]["try"] == 2


def test_start_without_started_gets_a_timestamp_and_finish_without_start(store: SQLiteStore) -> None:
    store.start_run("r1", {})
    store.finish_run("r2", [])
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["r1"]["started"][:2] == "20"  # an ISO timestamp
    assert runs["r2"]["started"] is None and runs["r2"]["metadata"] == {}
    assert runs["r2"]["summary"] == []


def test_second_connection_sees_committed_records(tmp_path: Path) -> None:
    # Commit after every add: another process (or a crash and reopen) sees each record at once.
    path = tmp_path / "shared.db"
    writer = SQLiteStore(path)
    reader = SQLiteStore(path)
    try:
        writer.start_run("r1", {"who": "writer"})
        writer.add(case("r1", 1))
        assert [r["item_id"] for r in reader.records("r1")] == ["1"]
        reader.add(case("r1", 2))
        assert len(writer.records("r1")) == 2
    finally:
        writer.close()
        reader.close()


def test_open_store_plain_path(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "a" / "x.db"))
    try:
        assert isinstance(s, SQLiteStore) and s.path == tmp_path / "a" / "x.db"
    finally:
        s.close()
    s = open_store(tmp_path / "y.db")
    s.close()
    assert (tmp_path / "y.db").is_file()


def test_open_store_sqlite_absolute_uri(tmp_path: Path) -> None:
    target = tmp_path / "abs.db"
    s = open_store(f"sqlite://{target}")
    s.close()
    assert target.is_file()


def test_open_store_sqlite_relative_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:runs/rel.db")
    try:
        assert s.path == Path("runs/rel.db")
    finally:
        s.close()
    assert (tmp_path / "runs" / "rel.db").is_file()


def test_open_store_memory() -> None:
    s = open_store("sqlite::memory:")
    try:
        s.add(case("r", 1))
        assert len(s.records("r")) == 1
    finally:
        s.close()


@pytest.mark.parametrize(
    ("uri", "path"),
    [("sqlite:///abs/r.db", "/abs/r.db"), ("sqlite:rel/r.db", "rel/r.db"), ("sqlite:r.db", "r.db")],
)
def test_sqlite_path(uri: str, path: str) -> None:
    assert sqlite_path(uri) == path


@pytest.mark.parametrize("uri", ["sqlite://host/r.db", "sqlite:", "sqlite://"])
def test_sqlite_path_rejects_hosts_and_empty(uri: str) -> None:
    with pytest.raises(ValueError, match="sqlite URI"):
        sqlite_path(uri)


def test_open_store_unknown_scheme_names_it_and_the_supported() -> None:
    with pytest.raises(ValueError, match=r"unknown store scheme 'postgres'.*sqlite:.*mongodb:"):
        open_store("postgres://localhost/db")


def test_the_text_given_with_a_record_is_the_one_kept(store: SQLiteStore) -> None:
    # The controller has the record's JSON already (to_json: sorted keys): it is kept as given.
    rec = case("r1", 1)
    text = json.dumps({**rec, "note": "from the text"}, sort_keys=True)
    store.add(rec, text)
    assert store.records("r1") == [{**rec, "note": "from the text"}]


def test_every_added_record_outlives_a_crash_of_the_writer(tmp_path: Path) -> None:
    # Checkpoints are rare (CHECKPOINT_PAGES); a commit is in the WAL, which the next opener reads.
    path = tmp_path / "crash.db"
    code = ("import os, sys\nsys.path[:0] = [os.environ['TESTS']]\nfrom support import case\n"
            "from harness.store.sqlite import SQLiteStore\n"
            f"store = SQLiteStore({str(path)!r})\n"
            "for n in range(300):\n    store.add(case('r1', n))\nos._exit(0)\n")
    env = {**os.environ, "TESTS": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert (tmp_path / "crash.db-wal").is_file()  # no clean close: the records are in the WAL
    with SQLiteStore(path) as reopened:
        assert [r["item_id"] for r in reopened.records("r1")] == [str(n) for n in range(300)]
