"""Shards into one MongoDB store and their merge (harness/run/shard.py, harness/report/merge.py): wall time of
one process against N shard processes started at once on the same cases, then of `harness report
--store URI RUN` merging the shards, and whether the merged run equals the one-process run.

    python bench/shard_speed.py [--shards 3] [--models oracle] [--samples N]

Starts nx-27017 (a MongoDB wire-protocol server, the dev extra) on a free loopback port; runs
`pytest benchmarks/test_mmlu.py benchmarks/test_extraction.py` once whole and once as N shards
(`--shard i/N`, one process each, all at once), then merges. With the oracle the work per case is
tiny, so the figures are the harness's own cost of sharding (start-up, store writes, the merge).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TARGETS = ["benchmarks/test_mmlu.py", "benchmarks/test_extraction.py"]
MEASURED = {"mean_latency_s", "tokens_per_s", "wall_s", "latency_p50_s", "latency_p95_s", "model_s", "cpu_s",
            "cpu_percent_mean", "rss_peak_mb"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_mongo(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import pymongo

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nx_27017.nx_27017", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(folder / "data"), "--log-file", str(folder / "nx.log"),
                             "--pid-file", str(folder / "nx.pid")], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        client: pymongo.MongoClient = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/",
                                                          serverSelectionTimeoutMS=250)
        try:
            client.admin.command("ping")
            return proc, f"mongodb://127.0.0.1:{port}/bench"
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("nx-27017 did not start") from None
            time.sleep(0.1)
        finally:
            client.close()


def pytest_cmd(uri: str, reports: Path, run_id: str, args: argparse.Namespace, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *TARGETS, "-q", "-p", "no:cacheprovider", "--models", args.models,
            "--store", uri, "--report-dir", str(reports), "--run-id", run_id, "--monitor-interval", "0",
            *(["--samples", str(args.samples)] if args.samples else []), *extra]


def timed(commands: list[list[str]]) -> float:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(out[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--models", default="oracle")
    parser.add_argument("--samples", type=int, default=0, help="items per suite (0: the samples' all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        mongo, uri = start_mongo(tmp)
        try:
            whole_s = timed([pytest_cmd(uri, tmp / "one", "whole", args)])
            shards_s = timed([pytest_cmd(uri, tmp / f"machine-{i}", "split", args, "--shard", f"{i}/{args.shards}")
                              for i in range(args.shards)])
            start = time.perf_counter()
            merged = subprocess.run([sys.executable, "-m", "harness.commands.cli", "report", "--store", uri,
                                     "--report-dir", str(tmp / "merged"), "split"], cwd=PROJECT, capture_output=True,
                                    text=True, env={**os.environ, "PYTHONPATH": str(PROJECT)})
            merge_s = time.perf_counter() - start
            if merged.returncode != 0:
                raise SystemExit(merged.stderr)
            one = json.loads((tmp / "one" / "whole" / "summary.json").read_text())["summary"]
            split = json.loads((tmp / "merged" / "split" / "summary.json").read_text())["summary"]
        finally:
            mongo.terminate()
            mongo.wait()
    same = [{k: v for k, v in r.items() if k not in MEASURED} for r in one] == \
        [{k: v for k, v in r.items() if k not in MEASURED} for r in split]
    cases = sum(r["items"] for r in split)
    print(f"{cases} cases ({args.models}), {os.cpu_count()} CPUs: one process {whole_s:.2f} s; "
          f"{args.shards} shards at once {shards_s:.2f} s; merge (harness report --store) {merge_s:.2f} s; "
          f"merged summary equals the one-process summary (but measured times): {same}")


if __name__ == "__main__":
    main()
