"""Shard selection (harness/run/shard.py) and the checks before shards merge (harness/report/merge.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from support import BENCHMARKS, PROJECT

from harness.report.merge import ShardMismatch, check_shards, merged_metadata
from harness.report.write import model_loads
from harness.run.shard import Shard, items_fingerprint, parse_shard, resolve_shard, shard_of

IDS = [f"benchmarks/test_mmlu.py::test_mmlu[oracle-astronomy-{n}]" for n in range(300)]


def test_shard_of_is_sha256_of_the_case_id_mod_n() -> None:
    case_id = IDS[7]
    expected = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % 5
    assert shard_of(case_id, 5) == expected
    assert shard_of(case_id, 1) == 0


def test_shards_cover_every_case_exactly_once_and_evenly() -> None:
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s.index for s in shards if s.holds(case_id)] for case_id in IDS]
    assert all(len(o) == 1 for o in owners)
    sizes = Counter(o[0] for o in owners)
    assert sorted(sizes) == [0, 1, 2] and all(70 <= n <= 130 for n in sizes.values()), sizes


def test_the_split_is_the_same_in_another_interpreter() -> None:
    # Python's hash() of a str is salted per process (PYTHONHASHSEED); the digest is not.
    code = "from harness.run.shard import shard_of; import sys; print([shard_of(i, 4) for i in sys.argv[1:]])"
    out = [subprocess.run([sys.executable, "-c", code, *IDS[:20]], cwd=PROJECT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT), "PYTHONHASHSEED": seed}, check=True).stdout
           for seed in ("1", "2")]
    assert out[0] == out[1] == f"{[shard_of(i, 4) for i in IDS[:20]]}\n"


def test_parse_shard() -> None:
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 0 / 1 ").label == "0/1"
    with pytest.raises(ValueError, match=r"--shard: '3' is not I/N"):
        parse_shard("3")
    with pytest.raises(ValueError, match=r"shard index 3 is outside 0..2 \(indices count from 0\)"):
        parse_shard("3/3")
    with pytest.raises(ValueError, match="at least 1 shard"):
        parse_shard("0/0")


def test_scheduler_variables_are_the_defaults() -> None:
    assert resolve_shard(None, None, {}) is None
    assert resolve_shard("1/4", None, {"JOB_COMPLETION_INDEX": "3"}) == Shard(1, 4)  # the option wins
    assert resolve_shard(None, 4, {"JOB_COMPLETION_INDEX": "3"}) == Shard(3, 4, "JOB_COMPLETION_INDEX")
    assert resolve_shard(None, None, {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}) == \
        Shard(2, 3, "SLURM_ARRAY_TASK_ID")
    # --array=1-3: task ids 1..3 are shards 0..2
    assert resolve_shard(None, None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1",
                                      "SLURM_ARRAY_TASK_COUNT": "3"}) == Shard(2, 3, "SLURM_ARRAY_TASK_ID")


@pytest.mark.parametrize(("given", "count", "env", "message"), [
    (None, None, {"JOB_COMPLETION_INDEX": "0"}, "give --shard-count N or HARNESS_SHARD_COUNT"),
    (None, None, {"SLURM_ARRAY_TASK_ID": "0"}, "not SLURM_ARRAY_TASK_COUNT"),
    (None, 3, {}, "--shard-count is given but no shard index"),
    ("0/2", 3, {}, "--shard 0/2 and --shard-count 3 disagree"),
    (None, 2, {"JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX='x': a whole number"),
    (None, 2, {"JOB_COMPLETION_INDEX": "2"}, "JOB_COMPLETION_INDEX: shard index 2 is outside 0..1"),
])
def test_bad_shard_settings_name_their_source(given: str | None, count: int | None, env: dict[str, str],
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_shard(given, count, env)


def test_items_fingerprint_sees_inputs_and_references_not_order() -> None:
    cases = [(IDS[n], {"question": f"q{n}"}, "A") for n in range(5)]
    assert items_fingerprint(cases) == items_fingerprint(list(reversed(cases)))
    changed = [*cases[:4], (IDS[4], {"question": "q4"}, "B")]
    assert items_fingerprint(changed) != items_fingerprint(cases)
    assert items_fingerprint(cases[:4]) != items_fingerprint(cases)


def entry(index: int, count: int = 3, **changes: Any) -> dict[str, Any]:
    data = {"index": index, "count": count, "hostname": f"node-{index}", "git_commit": "abc",
            "code_fingerprint": "c0de", "items_fingerprint": "17e5", "cases": 10,
            "started": f"2026-01-01T00:0{index}:00+00:00", "finished": f"2026-01-01T00:1{index}:00+00:00",
            "settings": {"samples": 8, "seed": 0, "shard": f"{index}/{count}", "report_dir": f"/r{index}",
                         "mmlu_data": f"/mnt/node-{index}/mmlu"}}
    return {**data, **changes}


def test_agreeing_shards_merge_into_one_run() -> None:
    shards = [entry(0), entry(1), entry(2)]
    check_shards("r", shards)  # the shard, report_dir and data path settings may differ
    merged = merged_metadata({"run_id": "r", "shard": "2/3"}, shards, 30)
    assert merged["hosts"] == ["node-0", "node-1", "node-2"] and merged["cases"] == 30
    assert merged["started"] == "2026-01-01T00:00:00+00:00" and merged["finished"] == "2026-01-01T00:12:00+00:00"
    assert merged["shard"] is None and [s["index"] for s in merged["shards"]] == [0, 1, 2]


def test_the_models_each_shard_hosted_add_up_in_the_merged_metadata() -> None:
    def loaded(pid: int) -> dict[str, Any]:
        return {"tiny": {"backend": "llamacpp", "processes": 2, "hosts": [{"pid": pid, "load_s": 1.0},
                                                                         {"pid": pid + 1, "load_s": 3.0}]}}

    shards = [entry(0, backends=loaded(10)), entry(1, backends=loaded(20)), entry(2, backends={})]
    merged = merged_metadata({"run_id": "r", "backends": {}}, shards, 30)
    assert merged["backends"]["tiny"]["processes"] == 4
    assert [h["pid"] for h in merged["backends"]["tiny"]["hosts"]] == [10, 11, 20, 21]
    assert all("backends" not in s for s in merged["shards"])  # listed once, under backends
    assert model_loads(merged)["tiny"] == {"load_s": 2.0, "rss_after_load_mb": None, "hosts": 4, "starts": 0,
                                           "crashes": 0, "extra_bufts": None}


@pytest.mark.parametrize(("shards", "message"), [
    ([entry(0), entry(2)], "shard(s) 1/3 never wrote to this store"),
    ([entry(0), entry(1, count=2), entry(2)], "shard 1/2 (on node-1) splits the run into 2 shards"),
    ([entry(0), entry(1, finished=None), entry(2)],
     "shard 1/3 (on node-1) has not finished (started 2026-01-01T00:01:00+00:00, 10 cases so far); "
     "continue it with --resume r --shard 1/3"),
    ([entry(0), entry(1), entry(2, code_fingerprint="0ther", git_commit="def")],
     "shard 2/3 (on node-2) ran other code than shard 0/3 (on node-0): code fingerprint 0ther (git def) "
     "vs c0de (git abc)"),
    ([entry(0), entry(1, items_fingerprint="d1ff"), entry(2)],
     "shard 1/3 (on node-1) ran other items than shard 0/3 (on node-0): items fingerprint d1ff vs 17e5"),
    ([entry(0), entry(1), entry(2, settings={"samples": 8, "seed": 1})],
     "shard 2/3 (on node-2) ran with other settings than shard 0/3 (on node-0): seed=1 vs 0"),
    ([entry(0), entry(1), entry(2, settings={**entry(2)["settings"], "mmlu_mode": "generate"})],  # a suite's option
     "shard 2/3 (on node-2) ran with other settings than shard 0/3 (on node-0): mmlu_mode='generate' vs None"),
])
def test_shards_that_differ_are_refused_naming_the_difference(shards: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ShardMismatch) as raised:
        check_shards("r", shards)
    assert message in str(raised.value)


def test_a_shard_the_environment_names_keeps_its_run_id_under_xdist(pytester: pytest.Pytester,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # No harness option on the command line: the xdist controller starts the harness at the first
    # record, yet hands its workers the run id before that; it must be the environment's, the one
    # every shard of the run shares, not a new one.
    reports = pytester.path / "reports"
    env = {"HARNESS_RUN_ID": "env-run", "HARNESS_SHARD": "1/2", "HARNESS_MODELS": "oracle",
           "HARNESS_REPORT_DIR": str(reports), "HARNESS_SAMPLES": "6"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess(str(BENCHMARKS / "test_mmlu.py"), "-p", "no:cacheprovider", "-n", "2")
    assert result.ret == 0, result.stdout.str()[-2000:]
    records = [json.loads(line) for line in (reports / "env-run" / "results.jsonl").read_text().splitlines()]
    assert records and {r["run_id"] for r in records} == {"env-run"}
    assert all(shard_of(r["case_id"], 2) == 1 for r in records)  # this shard's cases only


def test_a_session_that_does_not_use_the_harness_is_not_sharded(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A scheduler's index in the environment (and no run id) leaves another project's tests whole.
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    pytester.makepyfile("\n".join(f"def test_{n}():\n    pass\n" for n in range(9)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0 and "9 passed" in result.stdout.str() and "deselected" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()
