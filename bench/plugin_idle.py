"""What the installed plugin costs a pytest session that does not use it.

    python bench/plugin_idle.py [--repeat 12]

A project with one unrelated test runs with this environment's pytest, the harness plugin loaded
(it must stay inert: no registry, no model library, no reports folder) and with `-p no:harness`,
alternating so that both see the same load on the machine. Prints the medians of wall time and of
CPU time (user + system of the child: steadier than wall time on a busy machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = "def test_unrelated():\n    assert 1 + 1 == 2\n"


def once(project: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest run in `project`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=project,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    if (project / "reports").exists():
        raise SystemExit("the plugin wrote a reports folder in a session that does not use it")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "test_unrelated.py").write_text(TEST)
        runs: dict[str, list[tuple[float, float]]] = {"plugin loaded": [], "-p no:harness": []}
        once(project)  # warm the bytecode caches
        for _ in range(args.repeat):
            runs["plugin loaded"].append(once(project))
            runs["-p no:harness"].append(once(project, "-p", "no:harness"))
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{name:<14} wall median {wall:.3f} s   CPU median {cpu:.3f} s   ({len(values)} runs)")


if __name__ == "__main__":
    main()
