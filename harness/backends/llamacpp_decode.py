"""Continuous batching of greedy generation in a llama.cpp model host.

When several clients of one host (the xdist workers of a run) ask for text at once, their
sequences decode together: each llama.cpp decode carries one new token of every running sequence
(and the prompt tokens of sequences that just joined), so the pass over the weights, which bounds
a small model's decode speed on a CPU, is shared by the whole batch. Sequences join as they come
and leave as they finish (a stop string, end of generation, max_tokens); nobody waits for a batch
to fill or to drain.

The context is a second one on the already-loaded weights (no second copy, and the extra buffer
types the host's probe chose), with one KV stream of `seq_ctx` cells per slot; a sequence is
batched only where its prompt and max_tokens fit in a stream. Streams, not one unified cache:
with a unified cache every token attends over the cells of all the sequences in it (masked), which
made attention grow with every sequence in the batch. Measured with `bench/batch_ceiling.py
--threads 1 --prompt 300 --layout unified-flash,streams-flash,streams-noflash` (SmolLM2 135M Q4_1,
tokens per CPU second, so the machine's load does not move it): 8 sequences 57.0, 67.4 and 97.6;
one alone 38.1, 41.1 and 50.0. Flash attention follows the model's `flash_attn` (on by
default), so a sequence alone decodes token for token as the serial path does: without it the
attention's arithmetic differs, and greedy texts part at
the first near tie (every one of 6 GSM8K answers, serial and batched alike). Where speed matters
more than agreeing with the serial path, `options.batch_flash_attn = false` decodes without it.
Models with sliding-window attention (gemma 3) decode with it whatever is asked: llama.cpp's path
without it (llama-cpp-python 0.3.36) decoded wrong text once cells had been removed and reused
(" 12 + 30 = 26" where alone it is 42), so decode_flash_attn keeps it on there.

Greedy only (temperature 0, llama-cpp-python's repeat_penalty default of 1.0): the next token is
the logits' argmax, as the serial path's sampler picks it. The quantized kernels do not give
bit-identical logits for different batch shapes, so a near tie may go the other way; the parity
check (harness parity) measures what that does to scores.

Prefix reuse is explicit: a joining sequence starts from the longest prefix of its prompt already
in the cache (a finished one's prompt kept in its idle slot until the slot is wanted, or a running
sequence's, whose stream is copied), so few-shot examples and system prompts are computed once
while they stay; each result says how many prompt tokens it reused, the decoder how many of all it
was given. With sliding-window attention (gemma) a prefix is reused only where the window's cells
before its end are still in the stream, as llama-server checks it.

Each sequence's share of the host's CPU time is the process CPU time of each decode apportioned
by the tokens it had in that decode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends.base import cpu_since, cpu_times


@dataclass
class Decoded:
    completion: list[int]
    text: str
    finish_reason: str
    first_token_s: float | None
    cpu_s: float
    cpu_user_s: float
    cpu_system_s: float
    batch_mean: float  # sequences per decode over this sequence's decodes
    reused: int  # prompt tokens found in the cache, not computed


@dataclass
class _Sequence:
    prompt: list[int]
    max_tokens: int
    stop: tuple[str, ...]
    future: Future[Decoded]
    start: float = field(default_factory=time.perf_counter)
    slot: int = -1
    fed: int = 0  # prompt tokens in the cache
    completion: list[int] = field(default_factory=list)
    text: str = ""
    first_token_s: float | None = None
    cpu_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    decodes: int = 0
    companions: int = 0
    reused: int = 0


def decode_flash_attn(model: Any, model_flash_attn: bool) -> bool:
    """Flash attention for batched decoding: the model's own setting, so that a sequence alone
    decodes as the serial path does; on for a model with a sliding window, which needs it."""
    import llama_cpp

    return model_flash_attn or int(llama_cpp.llama_model_n_swa(model)) > 0


def _common(a: list[int], b: list[int]) -> int:
    """The length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchedDecoder:
    """One decoding thread; `submit` from any thread returns a future of the finished sequence."""

    def __init__(self, model: Any, *, n_vocab: int, detokenize: Callable[[list[int]], bytes],
                 is_end: Callable[[int], bool], step_lock: threading.Lock, slots: int = 8,
                 seq_ctx: int = 2048, n_batch: int = 512, n_threads: int = 2,
                 flash_attn: bool = True) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.n_swa = int(llama_cpp.llama_model_n_swa(model))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * seq_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(512, n_batch)
        params.n_seq_max = slots
        params.kv_unified = False  # a stream per slot: a token attends over its own sequence's cells only
        params.swa_full = False  # a sliding window's layers keep the window, not seq_ctx (_window_kept)
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.flash_attn_type = 1 if flash_attn else 0
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a decoding context")
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.seq_ctx = int(llama_cpp.llama_n_ctx_seq(self.ctx))  # llama.cpp may pad or cap it
        self.n_vocab, self.n_batch, self.slots, self.flash_attn = n_vocab, n_batch, slots, flash_attn
        self._detokenize, self._is_end = detokenize, is_end
        self._step_lock = step_lock  # the host's model lock: serial calls and decodes take turns
        self._waiting: list[_Sequence] = []
        self._running: list[_Sequence] = []
        self._idle: dict[int, list[int]] = {}  # slot -> the prompt of the finished sequence whose cells stay
        self._wake = threading.Condition()
        self._closed = False
        self.decodes = 0
        self.sequences = 0
        self.prompt_tokens = 0  # submitted
        self.prompt_reused = 0  # of those, found in the cache
        self._thread = threading.Thread(target=self._loop, name="llama-decode", daemon=True)
        self._thread.start()

    def fits(self, prompt_tokens: int, max_tokens: int) -> bool:
        return prompt_tokens > 0 and prompt_tokens + max_tokens <= self.seq_ctx

    def time_decode(self, prompt: list[int], steps: int) -> float:
        """Seconds of `steps` greedy decodes of one sequence alone after `prompt` (the engine's
        own rate, engine_rate.py): in a slot of its own, while nothing else runs; the caller holds
        the step lock, so the decoding thread waits."""
        with self._wake:
            if self._running or self._waiting:
                raise RuntimeError("the batch is busy: the engine's rate is measured alone")
            slot = self.slots - 1
            self._drop(slot)
        lib = self._lib
        n = 0
        for pos, token in enumerate(prompt[: self.n_batch]):
            n = self._put(n, token, pos, slot, pos == min(len(prompt), self.n_batch) - 1)
        self._decode(n)
        pos, seconds = n, 0.0
        for _ in range(steps):
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, 0 if pos > n else n - 1),
                                           shape=(self.n_vocab,))
            token = int(np.argmax(logits))
            start = time.perf_counter()
            self._decode(self._put(0, token, pos, slot, True))
            seconds += time.perf_counter() - start
            pos += 1
        self._drop(slot)
        return seconds

    def submit(self, prompt: list[int], max_tokens: int, stop: tuple[str, ...]) -> Future[Decoded]:
        sequence = _Sequence(list(prompt), max_tokens, stop, Future())
        if not self.fits(len(prompt), max_tokens):
            sequence.future.set_exception(ValueError(
                f"a prompt of {len(prompt)} tokens and {max_tokens} new ones exceed the {self.seq_ctx} "
                "cells of a batch slot"))
            return sequence.future
        with self._wake:
            self._waiting.append(sequence)
            self._wake.notify()
        return sequence.future

    # -- the decoding thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._running:
                    self._wake.wait()
                if self._closed:
                    return
                self._admit()
            try:
                with self._step_lock:
                    self._step()
            except Exception as exc:  # noqa: BLE001 - every sequence in the batch gets the error
                for sequence in self._running:
                    self._drop(sequence.slot)
                    sequence.future.set_exception(exc)
                self._running = []

    def _admit(self) -> None:
        """Waiting sequences join, in order, while a slot is free. A joining sequence starts from
        the longest prefix of its prompt already in the cache: an idle slot's (a finished
        sequence's prompt stays until its slot is wanted) or a running sequence's, whose stream is
        copied into the new slot (llama.cpp copies streams whole) and cut back to the prefix."""
        lib = self._lib
        while self._waiting:
            sequence = self._waiting[0]
            busy = {s.slot for s in self._running}
            if len(busy) >= self.slots:
                return
            limit = len(sequence.prompt) - 1  # one token at least is computed: its logits are the first read
            best, source, idle_source = 0, -1, False
            for slot, tokens in self._idle.items():
                common = min(_common(tokens, sequence.prompt), limit)
                if common > best:
                    best, source, idle_source = common, slot, True
            for other in self._running:
                common = min(_common(other.prompt[:other.fed], sequence.prompt), limit)
                if common > best:
                    best, source, idle_source = common, other.slot, False
            if idle_source:
                slot = source
                del self._idle[slot]
                lib.llama_memory_seq_rm(self._memory, slot, best, -1)
            else:
                empty = [s for s in range(self.slots) if s not in busy and s not in self._idle]
                slot = empty[0] if empty else next(iter(self._idle))
                self._drop(slot)
                if best:
                    lib.llama_memory_seq_cp(self._memory, source, slot, -1, -1)
                    lib.llama_memory_seq_rm(self._memory, slot, best, -1)
            if best and not self._window_kept(slot, best):
                self._drop(slot)
                best = 0
            self._waiting.pop(0)
            sequence.slot, sequence.fed, sequence.reused = slot, best, best
            self._running.append(sequence)
            self.sequences += 1
            self.prompt_tokens += len(sequence.prompt)
            self.prompt_reused += best

    def _window_kept(self, slot: int, prefix: int) -> bool:
        """Whether the cells a continuation after `prefix` attends to are all there: with a sliding
        window, positions before it may have been overwritten while the sequence went on."""
        low = int(self._lib.llama_memory_seq_pos_min(self._memory, slot))
        if self.n_swa <= 0:
            return low == 0
        return 0 <= low <= max(0, prefix - self.n_swa)

    def _drop(self, slot: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._idle.pop(slot, None)

    def _step(self) -> None:
        """One decode: the next token of each generating sequence, then prompt tokens of joining
        ones up to n_batch; logits where a sequence's next token is read."""
        lib = self._lib
        n = 0
        reads: list[tuple[_Sequence, int]] = []
        share: dict[int, int] = {}
        for sequence in self._running:
            if sequence.fed == len(sequence.prompt) and sequence.completion:
                n = self._put(n, sequence.completion[-1], sequence.fed + len(sequence.completion) - 1, sequence.slot,
                              True)
                reads.append((sequence, n - 1))
                share[id(sequence)] = 1
        for sequence in self._running:
            room = self.n_batch - n
            left = len(sequence.prompt) - sequence.fed
            if left <= 0 or room <= 0:
                continue
            take = min(left, room)
            for i in range(take):
                pos = sequence.fed + i
                n = self._put(n, sequence.prompt[pos], pos, sequence.slot, i == take - 1 and take == left)
            sequence.fed += take
            share[id(sequence)] = take
            if sequence.fed == len(sequence.prompt):
                reads.append((sequence, n - 1))
        before = cpu_times()
        self._decode(n, f"{len(self._running)} sequences ({n} tokens)")
        user, system = cpu_since(before)
        cpu = user + system
        self.decodes += 1
        for sequence in self._running:
            if id(sequence) in share:
                part = share[id(sequence)] / n
                sequence.cpu_s += cpu * part
                sequence.cpu_user_s += user * part
                sequence.cpu_system_s += system * part
                sequence.decodes += 1
                sequence.companions += len(share)
        for sequence, row in reads:
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, row), shape=(self.n_vocab,))
            self._append(sequence, int(np.argmax(logits)))

    def _decode(self, n: int, what: str = "") -> None:
        self._batch.n_tokens = n
        status = self._lib.llama_decode(self.ctx, self._batch)
        if status != 0:
            raise RuntimeError(f"llama_decode of {what or f'{n} tokens'} returned {status}")

    def _put(self, n: int, token: int, pos: int, slot: int, logits: bool) -> int:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = slot
        batch.logits[n] = logits
        return n + 1

    def _append(self, sequence: _Sequence, token: int) -> None:
        if sequence.first_token_s is None:
            sequence.first_token_s = time.perf_counter() - sequence.start
        finish = None
        if self._is_end(token):
            finish = "stop"
        else:
            sequence.completion.append(token)
            sequence.text = self._detokenize(sequence.completion).decode("utf-8", errors="ignore")
            cut = [sequence.text.find(s) for s in sequence.stop if s and s in sequence.text]
            if cut:
                sequence.text = sequence.text[:min(cut)]
                finish = "stop"
            elif len(sequence.completion) >= sequence.max_tokens:
                finish = "length"
        if finish is not None:  # its prompt's cells stay, for a later prompt that starts alike
            self._lib.llama_memory_seq_rm(self._memory, sequence.slot, len(sequence.prompt), -1)
            self._idle[sequence.slot] = sequence.prompt
            self._running.remove(sequence)
            sequence.future.set_result(Decoded(sequence.completion, sequence.text, finish, sequence.first_token_s,
                                               sequence.cpu_s, sequence.cpu_user_s, sequence.cpu_system_s,
                                               sequence.companions / max(1, sequence.decodes),
                                               sequence.reused))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            self._lib.llama_free(self.ctx)
            self.ctx = None
