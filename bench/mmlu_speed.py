"""MMLU questions per second with the embedded gemma model, loglikelihood vs generation mode.

    python bench/mmlu_speed.py [--samples 252] [--data ../shared/datasets/mmlu --split val]

Reference point (from the issue): lm-evaluation-harness 0.4.13 took 151.7 s (1.66 questions/s,
accuracy 0.2778) for 252 MMLU test questions with this model dequantized to fp32 in transformers,
batch 8, 0-shot, scoring " A".." D". The MMLU test split is not available here, so this runs the
same number of questions drawn (seeded) from the authors' val split, 0-shot, the same prompt.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
LM_EVAL_QPS = 1.66


def run(mode: str, args: argparse.Namespace, reports: Path) -> dict[str, float]:
    run_id = f"speed-{mode}"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(PROJECT / "benchmarks" / "test_mmlu.py"), "--models", args.model,
           "--mmlu-data", str(args.data), "--mmlu-split", args.split, "--samples", str(args.samples),
           "--seed", str(args.seed), "--mmlu-mode", mode, "--report-dir", str(reports), "--run-id", run_id]
    if args.workers > 1:
        cmd += ["-n", str(args.workers)]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    records = [json.loads(line) for line in (reports / run_id / "results.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["status"] in ("ok", "wrong")]
    cases = sum(r["timings"]["wall_s"] for r in records) / args.workers
    return {"n": len(records), "accuracy": sum(bool(r["correct"]) for r in scored) / max(len(scored), 1),
            "wall_s": wall, "cases_s": cases,
            "tokens": sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4")
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "datasets" / "mmlu")
    parser.add_argument("--split", default="val")
    parser.add_argument("--samples", type=int, default=252)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="loglikelihood,generate")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers (-n)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: run(mode, args, Path(tmp)) for mode in args.modes.split(",")}
    print(f"{args.model}, {args.samples} MMLU {args.split} questions (seed {args.seed}), 0-shot, "
          f"{args.workers} worker(s)")
    print(f"{'mode':<14} {'n':>4} {'accuracy':>8} {'run wall s':>10} {'q/s (run)':>9} "
          f"{'q/s (cases)':>11} {'vs lm-eval':>10} {'tokens':>7}")
    for mode, r in results.items():
        qps = r["n"] / r["wall_s"]
        print(f"{mode:<14} {r['n']:>4} {r['accuracy']:>8.4f} {r['wall_s']:>10.1f} {qps:>9.2f} "
              f"{r['n'] / r['cases_s']:>11.2f} {qps / LM_EVAL_QPS:>9.1f}x {r['tokens']:>7}")
    print(f"lm-evaluation-harness reference: {LM_EVAL_QPS} q/s (151.7 s for 252 questions), accuracy 0.2778")
    print("q/s (run) counts the whole pytest process: start-up, model load, reports.")


if __name__ == "__main__":
    main()
