"""MBPP's tasks read back from MongoDB (`--mbpp-data mongodb://...`): import once, then work from
the store. Against the project's MongoDB wire server (tests/mongo_server.py)."""

from __future__ import annotations

import pytest
from support import PROJECT, BenchRun

from harness.commands.cli import main as harness_cli
from harness.suites import mbpp
from harness.suites.unit import LoadContext

pytest.importorskip("pymongo", reason="the MongoDB store needs the mongodb extra")
from harness.store import read_tasks  # noqa: E402

SAMPLE = PROJECT / "fixtures" / "mbpp"


def import_sample(uri: str, split: str) -> None:
    assert harness_cli(["import-tasks", "--suite", "mbpp", "--data", str(SAMPLE), "--split", split,
                        "--store", uri]) == 0


def test_tasks_read_from_the_store_equal_the_files(mongo_uri: str) -> None:
    import_sample(mongo_uri, "test")
    from_file = mbpp.load(SAMPLE, split="test")
    options = mbpp.Options(data=mongo_uri)
    from_store = mbpp.SUITE.load(options, LoadContext(tasks=read_tasks))
    assert len(from_store) == len(from_file) > 0
    assert [(i.id, i.input, i.reference, i.meta) for i in from_store] == \
        [(i.id, i.input, i.reference, i.meta) for i in from_file]
    # The same seeded sample as from the file.
    sampled = mbpp.SUITE.load(options, LoadContext(samples=3, seed=5, tasks=read_tasks))
    assert [i.id for i in sampled] == [i.id for i in mbpp.load(SAMPLE, split="test", samples=3, seed=5)]


def test_a_split_not_imported_names_the_store_and_the_command(mongo_uri: str) -> None:
    import_sample(mongo_uri, "test")
    with pytest.raises(ValueError) as err:
        mbpp.SUITE.load(mbpp.Options(data=mongo_uri, split="validation"), LoadContext(tasks=read_tasks))
    message = str(err.value)
    assert "no mbpp tasks of split 'validation'" in message
    assert "harness import-tasks --suite mbpp --data PATH --split validation --store URI" in message


def test_a_run_reads_mbpp_tasks_from_the_store(bench: BenchRun, mongo_uri: str) -> None:
    import_sample(mongo_uri, "test")
    import_sample(mongo_uri, "prompt")  # the few-shot examples come from the store too
    result = bench("--models", "oracle", "--mbpp-data", mongo_uri, "--samples", "3", target="test_mbpp.py")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    expected = mbpp.load(SAMPLE, split="test", samples=3, seed=0)
    assert sorted(r["item_id"] for r in records) == sorted(i.id for i in expected)
    assert {r["status"] for r in records} == {"ok"} and all(r["correct"] for r in records)
    assert bench.summary()["metadata"]["settings"]["mbpp_data"] == mongo_uri


def test_a_run_from_an_empty_store_stops_before_any_case(bench: BenchRun, mongo_uri: str) -> None:
    result = bench("--models", "oracle", "--mbpp-data", mongo_uri, target="test_mbpp.py")
    assert result.ret != 0  # at collection, as a bad data file (the suites' rule)
    result.stdout.fnmatch_lines(["*suite mbpp: mongodb://*: no mbpp tasks of split 'test' in its tasks collection*"])
    assert not bench.run_dirs()
