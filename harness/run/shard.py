"""One run over several machines: which cases this copy runs, and what each shard says about itself.

A scheduler starts N copies of one command and hands each an index (Kubernetes Indexed Jobs:
JOB_COMPLETION_INDEX; SLURM job arrays: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT; a CI
matrix: whatever the matrix expands into `--shard I/N`). Copy I runs the cases whose SHA-256 of the
case id (the pytest node id, as every record's `case_id`) is I modulo N. The digest is stable
across processes, machines and Python versions, unlike Python's salted `hash()`, so every copy
agrees on the split without talking to the others, and the N shards cover every case exactly once.

Each shard also writes a description of itself into the store (`shard_metadata`): the machine,
the code version (a digest of the harness's and the benchmarks' sources, and the git commit where
there is one) and a fingerprint of the items of the whole run (every case id with its item's
input and reference, before the split). `harness report --store URI RUN` refuses to merge shards
whose code or items differ (harness/report/merge.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
# The harness's own package and the project's benchmark modules: what decides how a case is asked
# and scored. Digested, so a shard built from other code is told apart with or without git.
_PACKAGE = Path(__file__).resolve().parents[1]  # harness/, above run/


@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`, and where that came from (for messages)."""

    index: int
    count: int
    source: str = "--shard"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"{self.source}: a run has at least 1 shard, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"{self.source}: shard index {self.index} is outside 0..{self.count - 1} "
                             f"(indices count from 0)")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, case_id: str) -> bool:
        return shard_of(case_id, self.count) == self.index


def shard_of(case_id: str, count: int) -> int:
    """The shard (0..count-1) a case belongs to: SHA-256 of its id, modulo the count."""
    digest = hashlib.sha256(case_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str, source: str = "--shard") -> Shard:
    """`I/N` -> Shard(I, N); ValueError names the source and the form it takes."""
    found = _SPEC.match(text)
    if found is None:
        raise ValueError(f"{source}: {text!r} is not I/N (shard I of N, I counting from 0, e.g. 0/3)")
    return Shard(int(found.group(1)), int(found.group(2)), source)


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"{name}={env[name]!r}: a whole number is needed") from None


def resolve_shard(given: str | None, count: int | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """This copy's shard: `--shard I/N` (or HARNESS_SHARD), else the scheduler's own variables.

    - Kubernetes Indexed Job: JOB_COMPLETION_INDEX, with N from `--shard-count`/HARNESS_SHARD_COUNT
      (the Job's `completions`; Kubernetes does not put it in the pod's environment).
    - SLURM job array: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN (so `--array=1-3` works too),
      N from SLURM_ARRAY_TASK_COUNT (or --shard-count).
    None: no sharding (the whole run in this copy).
    """
    env = os.environ if env is None else env
    if given is not None:
        shard = parse_shard(given)
        if count is not None and count != shard.count:
            raise ValueError(f"--shard {given} and --shard-count {count} disagree on the number of shards")
        return shard
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            raise ValueError("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of "
                             "shards: give --shard-count N or HARNESS_SHARD_COUNT=N (the Job's completions)")
        return Shard(_integer(env, "JOB_COMPLETION_INDEX"), count, "JOB_COMPLETION_INDEX")
    if "SLURM_ARRAY_TASK_ID" in env:
        first = _integer(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        if count is None:
            if "SLURM_ARRAY_TASK_COUNT" not in env:
                raise ValueError("SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard-count N")
            count = _integer(env, "SLURM_ARRAY_TASK_COUNT")
        return Shard(_integer(env, "SLURM_ARRAY_TASK_ID") - first, count, "SLURM_ARRAY_TASK_ID")
    if count is not None:
        raise ValueError("--shard-count is given but no shard index: give --shard I/N, or run under a "
                         "Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a SLURM array")
    return None


def items_fingerprint(cases: Iterable[tuple[str, Any, Any]]) -> str:
    """A digest of every (case id, item input, item reference) of the whole run, order-free: shards
    that would ask different questions (other data, other --samples or --seed) differ here."""
    digests = sorted(
        hashlib.sha256(json.dumps([case_id, item_input, reference], sort_keys=True, default=str)
                       .encode("utf-8")).hexdigest()
        for case_id, item_input, reference in cases
    )
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()[:16]


def code_fingerprint(rootdir: Path) -> str:
    """A digest of the harness package's Python sources and the project's benchmark modules."""
    digest = hashlib.sha256()
    files = sorted(_PACKAGE.rglob("*.py"))
    benchmarks = rootdir / "benchmarks"
    if benchmarks.is_dir():
        files += sorted(benchmarks.rglob("*.py"))
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        name = path.relative_to(_PACKAGE.parent if path.is_relative_to(_PACKAGE) else rootdir).as_posix()
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def shard_metadata(shard: Shard, *, machine: Mapping[str, Any], git_commit: str | None, code: str,
                   items: str | None, cases: int, started: str, finished: str | None) -> dict[str, Any]:
    """What the store keeps about one shard; `harness report --store` checks these across shards."""
    return {"index": shard.index, "count": shard.count, "source": shard.source,
            "hostname": machine.get("hostname"), "machine": dict(machine), "git_commit": git_commit,
            "code_fingerprint": code, "items_fingerprint": items, "cases": cases,
            "started": started, "finished": finished}
