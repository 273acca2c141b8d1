"""What running each model in a host process of its own costs: the default MMLU run, hosted
against in-process, side by side on the same weights and settings.

    python bench/host_overhead.py [--rounds 3] [--samples 32]

Each round runs `pytest benchmarks/test_mmlu.py` (both default models, the project's sample)
twice, once with the models in hosts (the default) and once in the pytest process (`host =
false`), in alternating order, so a load that comes and goes hits both alike. Both take the
same registry entries with `use_extra_bufts = false`: an in-process llama.cpp cannot be probed
on CPUs whose AMX path crashes (upstream llama.cpp issue #20824), and the comparison needs the
same kernels on both sides. Printed: each run's wall time (the whole command) and its model
seconds (the time inside model calls, from the records), the medians, and hosted / in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def registry(folder: Path, hosted: bool) -> Path:
    """The default models with host = true/false and extra buffer types off."""
    from harness.models.registry import DEFAULT_REGISTRY

    data = tomllib.loads(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    lines = []
    for entry in data["models"]:
        if not entry.get("default"):
            continue
        options = {**entry.get("options", {}), "use_extra_bufts": False}
        lines += ["[[models]]"] + [f"{key} = {json.dumps(value)}" for key, value in entry.items()
                                   if key not in ("options", "host")]
        lines.append(f"host = {'true' if hosted else 'false'}")
        lines.append("options = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items()) + " }")
        lines.append("")
    path = folder / f"models-{'hosted' if hosted else 'inprocess'}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run(folder: Path, hosted: bool, samples: int, index: int) -> dict[str, float]:
    run_id = f"{'hosted' if hosted else 'inprocess'}-{index}"
    command = [sys.executable, "-m", "pytest", str(PROJECT / "benchmarks" / "test_mmlu.py"), "-q", "-p",
               "no:cacheprovider", "--models-file", str(registry(folder, hosted)), "--report-dir",
               str(folder / "reports"), "--run-id", run_id, "--samples", str(samples)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{run_id} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    lines = (folder / "reports" / run_id / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    model_s = sum(float(r["timings"].get("model_s") or 0.0) for r in records)
    case_s = sum(float(r["timings"].get("wall_s") or 0.0) for r in records)
    return {"wall_s": wall, "model_s": model_s, "case_s": case_s, "cases": len(records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="host-overhead-") as tmp:
        folder = Path(tmp)
        for index in range(args.rounds):
            for hosted in ((True, False) if index % 2 == 0 else (False, True)):
                row = run(folder, hosted, args.samples, index)
                results[hosted].append(row)
                print(f"round {index + 1} {'hosted    ' if hosted else 'in-process'} wall {row['wall_s']:7.2f} s  "
                      f"cases {row['case_s']:7.2f} s  model calls {row['model_s']:7.2f} s  ({int(row['cases'])} cases)",
                      flush=True)
    print()
    print(f"{'median':10} {'wall s':>8} {'cases s':>8} {'model s':>8}")
    medians = {}
    for hosted, rows in results.items():
        medians[hosted] = {k: statistics.median(r[k] for r in rows) for k in ("wall_s", "case_s", "model_s")}
        m = medians[hosted]
        print(f"{'hosted' if hosted else 'in-process':10} {m['wall_s']:8.2f} {m['case_s']:8.2f} {m['model_s']:8.2f}")
    for key in ("wall_s", "case_s", "model_s"):
        ratio = medians[True][key] / medians[False][key]
        print(f"hosted / in-process, {key}: {ratio:.3f} ({100 * (ratio - 1):+.1f}%)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
