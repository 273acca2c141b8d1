"""The MongoDB store over a real TCP connection to nx-27017 (a MongoDB wire-protocol server).

The server comes from tests/mongo_server.py (one per session, a fresh database per test).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from mongo_server import MongoServer, free_port
from support import SHARED_DATA, BenchRun, case

from harness.commands.cli import main as harness_cli
from harness.store import Store, open_store
from harness.suites.base import Item

pymongo = pytest.importorskip("pymongo", reason="the MongoDB store needs the mongodb extra")
from harness.commands.tasks import load_suite  # noqa: E402
from harness.store.mongo import TIMEOUT_S, MongoStore, import_tasks, redact  # noqa: E402

MMLU_SAMPLE = "fixtures/mmlu"
SAMPLE_TEST_ITEMS = 32  # fixtures/mmlu: 4 subjects x 8 test questions
SAMPLE_DEV_ITEMS = 20  # 4 subjects x 5 dev questions


@pytest.fixture
def store(mongo_uri: str) -> Iterator[MongoStore]:
    opened = open_store(mongo_uri)
    assert isinstance(opened, MongoStore)
    yield opened
    opened.close()


@pytest.fixture
def raw(mongo_uri: str) -> Iterator[Any]:
    """The test's database through pymongo alone: what the server really holds."""
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    yield client.get_default_database()
    client.close()


def test_open_store_gives_a_mongo_store_in_the_uri_database(store: MongoStore, mongo_uri: str) -> None:
    assert isinstance(store, Store)
    assert store.database == mongo_uri.rsplit("/", 1)[1]


def test_database_defaults_to_harness(mongo_server: MongoServer) -> None:
    with MongoStore(f"mongodb://{mongo_server.host}:{mongo_server.port}") as s:
        assert s.database == "harness"


def test_round_trip(store: MongoStore) -> None:
    records = [case("r1", n) for n in range(5)]
    records[2] = case("r1", 2, status="wrong", correct=False, prediction="C",
                      scores={"exact": 0.0}, resources={"rss_peak_bytes": 2**40})
    for rec in records:
        store.add(rec)
    assert store.records("r1") == records
    assert store.records("missing") == []


def test_unique_index_on_run_and_case(store: MongoStore, raw: Any) -> None:
    indexes = raw.cases.index_information().values()
    keys = {tuple(k for k, _ in index["key"]): bool(index.get("unique")) for index in indexes}
    assert keys[("run_id", "case_id")] is True
    # The index itself refuses a second document for one (run, case), whoever writes it.
    store.add(case("r1", 1))
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        raw.cases.insert_one({"run_id": "r1", "case_id": case("r1", 1)["case_id"]})


def test_retried_write_does_not_duplicate(store: MongoStore, raw: Any) -> None:
    store.add(case("r1", 1))
    store.add(case("r1", 2))
    store.add(case("r1", 1, attempts=2, prediction="B", correct=False, status="wrong"))
    assert raw.cases.count_documents({"run_id": "r1"}) == 2
    assert raw.cases.count_documents({"run_id": "r1", "item_id": "1"}) == 1
    records = store.records("r1")
    # The retry replaced the first write in place: the order of first addition is kept.
    assert [r["item_id"] for r in records] == ["1", "2"]
    assert records[0]["prediction"] == "B" and records[0]["attempts"] == 2


def test_retries_from_other_connections_at_once_do_not_duplicate(
    store: MongoStore, mongo_uri: str, raw: Any
) -> None:
    # A resumed run or a second controller: other connections, the same (run, case), all at once.
    writers = [open_store(mongo_uri) for _ in range(4)]
    errors: list[BaseException] = []

    def write(s: Store, n: int) -> None:
        try:
            for attempt in range(5):
                s.add(case("r1", 7, attempts=attempt + 1, writer=n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in writers:
        s.close()
    assert errors == []
    assert raw.cases.count_documents({}) == 1
    [record] = store.records("r1")
    assert record["attempts"] == 5 and record["writer"] in range(4)


def test_add_needs_run_and_case_ids(store: MongoStore) -> None:
    with pytest.raises(ValueError, match="case_id"):
        store.add({"run_id": "r1"})


def test_two_runs_kept_apart(store: MongoStore) -> None:
    store.add(case("r1", 1))
    store.add(case("r2", 1, prediction="Z"))
    store.add(case("r2", 2))
    assert [r["prediction"] for r in store.records("r1")] == ["A"]
    assert [r["prediction"] for r in store.records("r2")] == ["Z", "A"]


def test_runs_metadata_and_finish(store: MongoStore, raw: Any) -> None:
    store.start_run("r1", {"started": "2024-01-01T00:00:00+00:00", "models": ["tiny"]})
    store.start_run("r2", {"started": "2024-02-01T00:00:00+00:00", "models": ["small"]})
    store.finish_run("r1", [{"model": "tiny", "accuracy": 0.5, "ci": (0.1, 0.9)}])
    runs = store.runs()
    assert [r["run_id"] for r in runs] == ["r1", "r2"]
    assert runs[0]["started"] == "2024-01-01T00:00:00+00:00"
    assert runs[0]["metadata"] == {"started": "2024-01-01T00:00:00+00:00", "models": ["tiny"]}
    assert runs[0]["summary"] == [{"model": "tiny", "accuracy": 0.5, "ci": [0.1, 0.9]}]
    assert runs[0]["finished"][:2] == "20"
    assert runs[1]["finished"] is None and runs[1]["summary"] is None
    assert raw.runs.count_documents({}) == 2


def test_start_run_again_keeps_first_start(store: MongoStore) -> None:
    store.start_run("r1", {"started": "2024-01-01T00:00:00+00:00", "try": 1})
    store.start_run("r1", {"started": "2024-03-01T00:00:00+00:00", "try": 2})
    (run,) = store.runs()
    assert run["started"] == "2024-01-01T00:00:00+00:00"
    assert run["metadata"]["try"] == 2


def test_finish_without_start_and_start_after_finish(store: MongoStore) -> None:
    store.start_run("r1", {})
    store.finish_run("r2", [])
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["r1"]["started"][:2] == "20"  # an ISO timestamp
    assert runs["r2"]["started"] is None and runs["r2"]["metadata"] == {}
    assert runs["r2"]["summary"] == []
    store.start_run("r2", {"started": "2024-05-01T00:00:00+00:00"})
    runs = {r["run_id"]: r for r in store.runs()}
    assert runs["r2"]["started"] == "2024-05-01T00:00:00+00:00" and runs["r2"]["summary"] == []


def test_closed_port_fails_fast_naming_the_uri() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/x"
    began = time.monotonic()
    with pytest.raises(ValueError, match=rf"cannot use the MongoDB store '{uri}' within 5 s"):
        open_store(uri)
    elapsed = time.monotonic() - began
    assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 3


def test_timeout_in_the_uri_wins_and_passwords_stay_hidden() -> None:
    port = free_port()
    uri = f"mongodb://bench:s3cret@127.0.0.1:{port}/x?serverSelectionTimeoutMS=300"
    began = time.monotonic()
    with pytest.raises(ValueError) as caught:
        open_store(uri)
    assert time.monotonic() - began < 3
    assert f"bench:***@127.0.0.1:{port}/x" in str(caught.value) and "s3cret" not in str(caught.value)
    assert redact("mongodb://u:p@h/db") == "mongodb://u:***@h/db"


def test_malformed_uri_names_it() -> None:
    with pytest.raises(ValueError, match="MongoDB store 'mongodb://127.0.0.1:notaport/x'"):
        open_store("mongodb://127.0.0.1:notaport/x")


def test_without_pymongo_open_store_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "harness.store.mongo")
    monkeypatch.setitem(sys.modules, "pymongo", None)  # import pymongo now raises ImportError
    with pytest.raises(ValueError, match=r"mongodb:// store requested, but .*mongodb extra"):
        open_store("mongodb://localhost:27017/bench")


# -- tasks -------------------------------------------------------------------------------------------
def test_import_tasks_twice_gives_the_same_count(store: MongoStore, raw: Any) -> None:
    split, items = load_suite("mmlu", MMLU_SAMPLE)
    assert split == "test" and len(items) == SAMPLE_TEST_ITEMS
    assert import_tasks(store, "mmlu", split, items) == (SAMPLE_TEST_ITEMS, SAMPLE_TEST_ITEMS)
    assert import_tasks(store, "mmlu", split, items) == (SAMPLE_TEST_ITEMS, 0)
    assert raw.tasks.count_documents({"suite": "mmlu"}) == SAMPLE_TEST_ITEMS
    first = store.tasks("mmlu", "test")[0]
    assert (first["item_id"], first["reference"]) == (items[0].id, items[0].reference)
    assert first["input"]["choices"] == list(items[0].input["choices"])
    # Item ids repeat across splits (astronomy-0 is in dev and test): the split is part of the key.
    dev_split, dev = load_suite("mmlu", MMLU_SAMPLE, "dev")
    assert import_tasks(store, "mmlu", dev_split, dev) == (SAMPLE_DEV_ITEMS, SAMPLE_DEV_ITEMS)
    assert raw.tasks.count_documents({}) == SAMPLE_TEST_ITEMS + SAMPLE_DEV_ITEMS


def test_import_tasks_command(mongo_uri: str, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["import-tasks", "--suite", "mmlu", "--data", MMLU_SAMPLE, "--split", "dev", "--store", mongo_uri]
    assert harness_cli(argv) == 0
    assert f"{SAMPLE_DEV_ITEMS} mmlu items (dev)" in capsys.readouterr().out
    assert harness_cli(argv) == 0
    assert f"0 new, {SAMPLE_DEV_ITEMS} replaced" in capsys.readouterr().out
    assert raw.tasks.count_documents({"suite": "mmlu", "split": "dev"}) == SAMPLE_DEV_ITEMS


def test_import_tasks_command_errors(mongo_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness_cli(["import-tasks", "--suite", "nosuch", "--data", "x", "--store", mongo_uri]) == 2
    assert "unknown suite 'nosuch'" in capsys.readouterr().err
    assert harness_cli(["import-tasks", "--suite", "mmlu", "--data", "x.db", "--store", "x.db"]) == 2
    assert "only in a mongodb:// store" in capsys.readouterr().err


def test_load_suite_follows_the_loader_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    with_splits = types.ModuleType("harness.suites.fake_split")
    with_splits.load = lambda source, *, split="train": [Item(f"{split}-1", {"q": source}, "x")]  # type: ignore[attr-defined]
    without = types.ModuleType("harness.suites.fake_flat")
    without.load = lambda source: [Item("1", {}, "y"), Item("2", {}, "z")]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.suites.fake_split", with_splits)
    monkeypatch.setitem(sys.modules, "harness.suites.fake_flat", without)
    assert load_suite("fake_split", "d") == ("train", [Item("train-1", {"q": "d"}, "x")])
    assert load_suite("fake_split", "d", "validation")[1][0].id == "validation-1"
    assert [i.id for i in load_suite("fake_flat", "d")[1]] == ["1", "2"]
    assert load_suite("fake_flat", "d")[0] == "all"
    with pytest.raises(ValueError, match="no splits"):
        load_suite("fake_flat", "d", "test")
    with pytest.raises(ValueError, match="not a suite name"):
        load_suite("../mmlu", "d")


@pytest.mark.skipif(importlib.util.find_spec("harness.suites.mbpp") is None, reason="no MBPP suite yet")
def test_import_mbpp_validation_from_the_shared_data(store: MongoStore, raw: Any) -> None:
    if not (SHARED_DATA / "mbpp").is_dir():
        pytest.skip(f"{SHARED_DATA / 'mbpp'} is not on this machine")
    split, items = load_suite("mbpp", str(SHARED_DATA / "mbpp"), "validation")
    assert len(items) == 90  # task_id 511-600
    assert import_tasks(store, "mbpp", split, items) == (90, 90)
    assert import_tasks(store, "mbpp", split, items) == (90, 0)
    assert raw.tasks.count_documents({"suite": "mbpp"}) == 90


# -- a whole run through the plugin ------------------------------------------------------------------
def test_benchmark_run_writes_to_mongodb(bench: BenchRun, mongo_server: MongoServer) -> None:
    uri = mongo_server.uri("harness_test")
    result = bench("--models", "oracle", "--samples", "4", "--store", uri)
    assert result.ret == 0, result.stdout.str()
    run_id = bench.records()[0]["run_id"]
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        db = client.get_default_database()
        cases = list(db.cases.find({"run_id": run_id}, {"_id": 0}))
        run = db.runs.find_one({"run_id": run_id})
    finally:
        client.close()
    assert len(cases) == 4
    assert {c["status"] for c in cases} == {"ok"} and all(c["correct"] for c in cases)
    assert sorted(c["case_id"] for c in cases) == sorted(r["case_id"] for r in bench.records())
    assert run is not None and run["finished"] and run["metadata"]["run_id"] == run_id
    [row] = run["summary"]
    assert (row["model"], row["suite"], row["accuracy"]) == ("oracle", "mmlu", 1.0)
    # The store named on the command line replaced the default SQLite file.
    assert not (bench.reports / "harness.sqlite").exists()


def test_unreachable_store_stops_the_run_before_any_case(bench: BenchRun) -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/harness_test?serverSelectionTimeoutMS=300"
    result = bench("--models", "oracle", "--samples", "2", "--store", uri)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*cannot use the MongoDB store '{uri}'*"])
    assert bench.run_dirs() == []
