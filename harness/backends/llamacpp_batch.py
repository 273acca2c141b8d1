"""Many token sequences in one llama.cpp decode: the batched loglikelihood of the llama.cpp backend.

llama-cpp-python's Llama object holds one sequence. Scoring many short prompts one at a time
leaves most of each micro-batch empty and pays a thread synchronisation per layer per prompt; on
a small CPU (2 cores, shared) packing up to `n_seq_max` prompts into one decode of up to `n_batch`
tokens scores them 2-8x faster, the more so the busier the CPU (bench/mmlu_speed.py).

This keeps a second llama.cpp context on the same loaded weights (no second copy of the model):
a unified KV cache of `n_batch` cells that every decode starts empty, each sequence at positions
0.. with its own sequence id, logits only where they are read. A prefix that sequences of one
decode share (a subject's few-shot examples, a system prompt) is computed once: its tokens carry
every sharing sequence's id (`reused` counts the tokens that were not computed again).

llama.cpp's quantized matrix kernels do not give bit-identical logits for different batch shapes
(the same prompt alone or among others differs by up to ~0.5 in a logit), so a near tie between
two answers can go either way; the MMLU predictions agree with the unbatched run on 95-97% of
the questions (see bench/mmlu_speed.py). transformers in fp32 agrees to ~1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Tokens = tuple[int, ...]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SequenceBatch:
    """A llama.cpp context that decodes up to `n_seq_max` sequences of `n_batch` tokens at once."""

    def __init__(self, model: Any, *, n_vocab: int, n_seq_max: int, n_batch: int, n_threads: int,
                 n_threads_batch: int, flash_attn: bool) -> None:
        import llama_cpp

        self._lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_batch
        params.n_batch = n_batch
        params.n_ubatch = min(512, n_batch)
        params.n_seq_max = n_seq_max
        params.kv_unified = True  # one cache for all: a decode's sequences share its n_batch cells
        params.n_threads = n_threads
        params.n_threads_batch = n_threads_batch
        params.flash_attn_type = 1 if flash_attn else 0
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batch context")
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self.n_vocab = n_vocab
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, n_seq_max)
        self.reused: dict[Tokens, int] = {}  # the last call's sequences: prefix tokens another computed

    def fits(self, sequence: Sequence[int]) -> bool:
        return 0 < len(sequence) <= self.n_batch

    def last_logprobs(self, wanted: dict[Tokens, int]) -> dict[Tokens, list[np.ndarray]]:
        """For each sequence, the next-token log-probabilities after each of its last k tokens
        (k = wanted[sequence]), oldest first. Every sequence must fit()."""
        found: dict[Tokens, list[np.ndarray]] = {}
        self.reused = {}
        pending = sorted(wanted)  # sorted: sequences with a common prefix meet in one decode
        while pending:
            chunk: list[Tokens] = []
            used = 0
            while pending and len(chunk) < self.n_seq_max and used + len(pending[0]) <= self.n_batch:
                chunk.append(pending.pop(0))
                used += len(chunk[-1])
            if not chunk:
                raise ValueError(f"a sequence of {len(pending[0])} tokens does not fit {self.n_batch}")
            found.update(self._decode(chunk, wanted))
        return found

    def _decode(self, chunk: list[Tokens], wanted: dict[Tokens, int]) -> dict[Tokens, list[np.ndarray]]:
        lib, batch = self._lib, self._batch
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        rows: dict[Tokens, list[int]] = {}
        n = 0
        previous: Tokens = ()
        at: list[int] = []  # the batch row of each token of the previous sequence
        for seq_id, sequence in enumerate(chunk):
            first_read = len(sequence) - wanted[sequence]
            # Sorted, a sequence's longest common prefix in the chunk is the previous one's; its
            # rows take this sequence's id too (its own reads stay its own rows).
            shared = min(_common(previous, sequence), first_read)
            for row in at[:shared]:
                batch.seq_id[row][batch.n_seq_id[row]] = seq_id
                batch.n_seq_id[row] += 1
            self.reused[sequence] = shared
            at = at[:shared]
            for pos in range(shared, len(sequence)):
                batch.token[n] = sequence[pos]
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = pos >= first_read
                if pos >= first_read:
                    rows.setdefault(sequence, []).append(n)
                at.append(n)
                n += 1
            previous = sequence
        batch.n_tokens = n
        status = lib.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode of {len(chunk)} sequences ({n} tokens) returned {status}")
        return {sequence: [log_softmax(np.ctypeslib.as_array(lib.llama_get_logits_ith(self.ctx, row),
                                                             shape=(self.n_vocab,)))
                           for row in at]
                for sequence, at in rows.items()}

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            self._lib.llama_free(self.ctx)
            self.ctx = None
