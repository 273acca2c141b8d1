"""The harness's overhead per case: the oracle over N synthetic MMLU cases, against plain pytest.

    python bench/overhead.py [--cases 1000] [--repeat 3] [--hosted]

Both runs are subprocesses of the same pytest, with the same number of parametrized cases; the
plain run's tests do nothing, so the difference per case is what the harness adds: building the
prompt, the backend call wrapper, the record, its trip through user_properties, results.jsonl and
the SQLite store, and the summaries. `--hosted` runs the oracle in a model host of its own, as
the in-process models run by default (backends/hosted.py): each call then crosses the host's socket.
The fixed part (startup, the reports at the end: about a second here) is in the first figure too;
`--slope M` also runs M times as many cases and separates the two: the overhead of one more case
(the slope) and the fixed part.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

PLAIN = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_plain(i):
    pass
"""


def write_items(folder: Path, n: int) -> None:
    """n questions over 10 subjects in the authors' layout."""
    test = folder / "test"
    test.mkdir(parents=True)
    per = n // 10
    for s in range(10):
        with open(test / f"subject{s}_test.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            for i in range(per + (1 if s < n % 10 else 0)):
                writer.writerow([f"Question {s}-{i}: which letter?", "one", "two", "three", "four", "ABCD"[i % 4]])


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                         cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"pytest failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return elapsed


def measure(root: Path, cases: int, repeat: int, hosted: bool) -> tuple[float, float]:
    """(harness, plain) median wall seconds over `repeat` interleaved runs of `cases` cases."""
    folder = root / str(cases)
    write_items(folder / "data", cases)
    plain = folder / "plain"
    plain.mkdir()
    (plain / "test_plain.py").write_text(PLAIN.format(n=cases))
    harness_args = [str(PROJECT / "benchmarks" / "test_mmlu.py"), "--models", "oracle",
                    "--mmlu-data", str(folder / "data"), "--report-dir", str(folder / "reports")]
    if hosted:
        (folder / "hosted.toml").write_text('[[models]]\nname = "oracle-hosted"\nbackend = "oracle"\n'
                                            'model = "reference"\nhost = true\n')
        harness_args[2] = "oracle-hosted"
        harness_args += ["--models-file", str(folder / "hosted.toml")]
    harness_times, plain_times = [], []
    for _ in range(repeat):  # interleaved, so drift on a noisy machine hits both alike
        plain_times.append(timed([str(plain)], plain))
        harness_times.append(timed(harness_args, PROJECT))
    return statistics.median(harness_times), statistics.median(plain_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--hosted", action="store_true", help="the oracle in a model host (host = true)")
    parser.add_argument("--slope", type=int, default=0, metavar="M",
                        help="also run M times as many cases and give the overhead of one more case "
                             "(the slope between the two sizes, start-up and reports aside) and the fixed part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        h, p = measure(Path(tmp), args.cases, args.repeat, args.hosted)
        big = measure(Path(tmp), args.cases * args.slope, args.repeat, args.hosted) if args.slope > 1 else None
    print(f"cases: {args.cases}, repeats: {args.repeat} (medians)")
    print(f"plain pytest, no-op tests:   {p:7.2f} s  ({p / args.cases * 1e3:.3f} ms per case)")
    print(f"harness, oracle{' hosted' if args.hosted else ''}:{'' if args.hosted else '       '}   "
          f"{h:7.2f} s  ({h / args.cases * 1e3:.3f} ms per case)")
    print(f"harness overhead per case:   {(h - p) / args.cases * 1e3:.3f} ms (start-up and reports included)")
    if big is not None:
        more = args.cases * (args.slope - 1)
        marginal = ((big[0] - h) - (big[1] - p)) / more
        print(f"{args.cases * args.slope} cases: harness {big[0]:.2f} s, plain {big[1]:.2f} s")
        print(f"overhead of one more case:   {marginal * 1e3:.3f} ms (the slope between {args.cases} and "
              f"{args.cases * args.slope} cases)")
        print(f"fixed part (start-up, reports): {(h - p) - marginal * args.cases:.2f} s")


if __name__ == "__main__":
    main()
