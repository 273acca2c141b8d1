"""The engine's own ceiling for batched decoding on this CPU: llama.cpp decode steps of k sequences.

    python bench/batch_ceiling.py [--model smollm2-135m] [--ks 1,2,4,8,16] [--steps 30] [--threads 1]
                                  [--prompt 200] [--layout streams-noflash,streams-flash,unified-flash]

Each step decodes the next token of k sequences (each --prompt tokens in) in one llama_decode,
logits for all k, on a context like the model host's batched decoder (llamacpp_decode.py: a KV
stream per sequence, flash attention off on a CPU), extra buffer types as the host's probe chose
them. `--layout` measures other contexts beside it: `unified` is one KV cache shared by all the
sequences (each token attends over every sequence's cells, masked), `flash`/`noflash` flash
attention on or off. With --threads 1 the figure that counts is tokens per CPU second of the
calling thread: it does not move with the machine's load, so it can be read on a busy machine;
the wall rate is printed beside it. A model whose k=8 figure is c times its k=1 figure cannot make
GSM8K more than about c times faster with -n 8 on this CPU, however the harness batches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from harness.backends.llamacpp import _model_params  # noqa: E402
from harness.backends.modelfiles import resolve_model_path  # noqa: E402
from harness.core.locations import registry_files  # noqa: E402
from harness.models.registry import load_registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ks", default="1,2,4,8,16")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra-bufts", choices=("on", "off"), default="off",
                        help="llama.cpp's extra buffer types (off: what the probe picks on an AMX CPU)")
    parser.add_argument("--prompt", type=int, default=200, help="tokens each sequence is in (a GSM8K prompt: 200)")
    parser.add_argument("--layout", default="streams-noflash",
                        help="comma-separated contexts: streams|unified - flash|noflash")
    args = parser.parse_args()
    import llama_cpp

    spec = load_registry(registry_files(None, PROJECT))[args.model]
    with _model_params(args.extra_bufts == "on"):
        llm = llama_cpp.Llama(model_path=resolve_model_path(spec.model), n_ctx=512, n_threads=args.threads,
                              n_threads_batch=args.threads, verbose=False)
    ks = [int(k) for k in args.ks.split(",")]
    print(f"{args.model}, {args.threads} thread(s), extra bufts {args.extra_bufts}, {args.steps} steps per k, "
          f"sequences {args.prompt} tokens in")
    for layout in args.layout.split(","):
        kv, _, attention = layout.partition("-")
        if kv not in ("streams", "unified") or attention not in ("flash", "noflash"):
            raise SystemExit(f"--layout {layout!r}: streams|unified - flash|noflash")
        print(f"{layout}:")
        measure(llama_cpp, llm, ks, args, unified=kv == "unified", flash=attention == "flash")


def measure(llama_cpp: Any, llm: Any, ks: list[int], args: argparse.Namespace, *, unified: bool,
            flash: bool) -> None:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = max(ks) * (args.prompt + args.steps + 64) if not unified else 8192
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = max(ks)
    params.kv_unified, params.flash_attn_type = unified, int(flash)
    params.n_threads = params.n_threads_batch = args.threads
    ctx = llama_cpp.llama_init_from_model(llm.model, params)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    memory = llama_cpp.llama_get_memory(ctx)

    def put(n: int, token: int, pos: int, seq: int, logits: bool) -> int:
        batch.token[n], batch.pos[n], batch.n_seq_id[n], batch.logits[n] = token, pos, 1, logits
        batch.seq_id[n][0] = seq
        return n + 1

    def decode(n: int) -> None:
        batch.n_tokens = n
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise SystemExit(f"llama_decode of {n} tokens failed")

    prompt = args.prompt
    for seq in range(max(ks)):  # every sequence `prompt` tokens in
        n = 0
        for pos in range(prompt):
            n = put(n, 100 + (pos * 7 + seq) % 500, pos, seq, pos == prompt - 1)
            if n == 512:
                decode(n)
                n = 0
        if n:
            decode(n)
    print(f"{'k':>3} {'ms cpu/step':>11} {'tok/cpu-s':>9} {'vs k=1':>7} {'wall tok/s':>10}")
    first = None
    for k in ks:
        cpu = wall = 0.0
        for step in range(args.steps):
            n = 0
            for seq in range(k):
                n = put(n, 300 + step, prompt + step, seq, True)
            c, w = time.thread_time(), time.perf_counter()
            decode(n)
            cpu += time.thread_time() - c
            wall += time.perf_counter() - w
        for seq in range(max(ks)):
            llama_cpp.llama_memory_seq_rm(memory, seq, prompt, -1)
        rate = k * args.steps / cpu
        first = first or rate
        print(f"{k:>3} {cpu / args.steps * 1e3:>11.2f} {rate:>9.1f} {rate / first:>6.2f}x "
              f"{k * args.steps / wall:>10.1f}", flush=True)
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)


if __name__ == "__main__":
    main()
