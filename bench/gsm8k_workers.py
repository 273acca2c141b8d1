"""GSM8K generation with one shared model host: completion tokens/s with -n 1 against -n N.

    python bench/gsm8k_workers.py [--model smollm2-135m] [--samples 32] [--workers 1,8] [--rounds 1]
                                  [--data ../shared/datasets/gsm8k --split train]

Each row is a whole pytest command (start-up, host start, model load, reports) over the same
problems; the rate is the run's completion tokens over its wall time. The host's RSS after load
comes from summary.json's `models` (one host per model per machine, whatever -n is), the peak
from its summary row (with the batched decoder's KV cells, made by the first generation). Rounds
alternate the worker counts, so drift on a noisy machine hits every row alike; the load average
is printed at the end of each row. The engine's own ceiling for batched decoding on this CPU is
bench/batch_ceiling.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def run(model: str, workers: int, args: argparse.Namespace, reports: Path, run_id: str) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_gsm8k.py",
           "--models", model, "--gsm8k-data", str(args.data), "--gsm8k-split", args.split,
           "--samples", str(args.samples), "--seed", str(args.seed), "-n", str(workers),
           "--report-dir", str(reports), "--run-id", run_id]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode not in (0, 1):  # 1: some answers were wrong, which is the suite's business
        raise SystemExit(f"-n {workers} failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    summary = json.loads((reports / run_id / "summary.json").read_text())
    [row] = [r for r in summary["summary"] if r["model"] == model]
    host = summary.get("models", {}).get(model, {})
    return {"wall_s": wall, "completion_tokens": row["completion_tokens"], "accuracy": row["accuracy"],
            "cpu_s": row["cpu_s"], "rss_after_load_mb": host.get("rss_after_load_mb"), "hosts": host.get("hosts"),
            "rss_peak_mb": row.get("rss_peak_mb"),
            "command": " ".join(cmd[2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", default="1,8")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "datasets" / "gsm8k")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    load = os.getloadavg()
    print(f"{args.samples} GSM8K {args.split} problems (seed {args.seed}), {args.model}; load at start "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'-n':>3} {'round':>5} {'wall s':>7} {'tokens':>7} {'tok/s':>7} {'vs -n 1':>7} {'cpu s':>7} "
          f"{'host RSS':>8} {'peak RSS':>8} {'hosts':>5} {'acc':>6} {'load':>5}", flush=True)
    base: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for workers in counts:
                r = run(args.model, workers, args, Path(tmp), f"n{workers}-r{round_}")
                rate = r["completion_tokens"] / r["wall_s"]
                if workers == counts[0]:
                    base[round_] = rate
                ratio = rate / base[round_] if round_ in base else float("nan")
                rss, peak = r["rss_after_load_mb"], r["rss_peak_mb"]
                print(f"{workers:>3} {round_:>5} {r['wall_s']:>7.1f} {r['completion_tokens']:>7} {rate:>7.1f} "
                      f"{ratio:>6.2f}x {r['cpu_s']:>7.1f} {'-' if rss is None else f'{rss:.0f} MB':>8} "
                      f"{'-' if peak is None else f'{peak:.0f} MB':>8} "
                      f"{r['hosts'] or '-':>5} {r['accuracy']:>6.3f} {os.getloadavg()[0]:>5.1f}", flush=True)
    print(f"\ncommand: {r['command']}")


if __name__ == "__main__":
    main()
