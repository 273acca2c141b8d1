"""Scoring forward passes for the transformers backend, with explicit prefix reuse.

Prompts that share a beginning (a subject's few-shot examples, a system prompt) need not compute
it again: the key/value cache of a computed prefix is kept, and a later sequence that starts with
it computes only the rest. `PrefixStore` keeps the caches of the last few sequences this backend
computed (an LRU keyed by their tokens); a new sequence starts from the longest prefix that any of
them shares with it. Within one call, sequences that share a prefix are grouped: the prefix is
computed once (itself from the store where it can be) and their suffixes run batched on copies
of its cache. So reuse survives batching and interleaving, and each backend instance (one per
model) has a store of its own.

The caches are plain `DynamicCache`s of full layers, also for sliding-window layers: a sliding
layer's cache keeps only the window's last tokens, so it could not be cut back to an earlier
prefix; with the full keys kept, the model's sliding mask still limits what each token sees.
(In float64 the reused and the full computation agree to 1e-14 on gemma 3, whose window of 512
the 5-shot MMLU prompts exceed.)

In float32, two computations of the same sequence in different shapes (batched or not, with or
without a cache) round differently. Two sources of that are the same for every path here and so
do not make paths differ: the output head runs one position at a time (a matrix-vector product
whose rounding does not depend on the batch), and the log-softmax over the vocabulary is taken
in float64 (in float32 its sum over 262k logits alone is off by 1e-5). What is left is the
rounding inside the layers, a few 1e-6 on log-likelihoods.

Every result says how many of its prompt tokens were computed and how many came from a cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Tokens = tuple[int, ...]
# Layer types whose keys and values a full DynamicCache holds exactly; a model with any other
# (linear attention, recurrent state) is scored without reuse.
REUSABLE_LAYERS = {"full_attention", "sliding_attention"}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class PrefixStore:
    """Key/value caches of the last `capacity` token sequences computed, least recently used out.

    An entry holds, per layer, the keys and values (batch 1) of every token of its sequence; any
    prefix of it is a slice. Entries are never changed in place: a reuse copies the slice.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Tokens, list[tuple[Any, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, tokens: Sequence[int], limit: int) -> tuple[list[tuple[Any, Any]] | None, int]:
        """The entry sharing the longest prefix with `tokens` (at most `limit` tokens of it)."""
        best: Tokens | None = None
        length = 0
        for key in self._entries:
            shared = min(common_prefix(key, tokens), limit)
            if shared > length:
                best, length = key, shared
        if best is None:
            return None, 0
        self._entries.move_to_end(best)
        return self._entries[best], length

    def keep(self, tokens: Tokens, layers: list[tuple[Any, Any]]) -> None:
        if self.capacity <= 0 or not tokens:
            return
        self._entries[tokens] = layers
        self._entries.move_to_end(tokens)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class Scored:
    """The log-probabilities of one sequence's last positions, and what computing it cost."""

    logprobs: Any  # (positions, vocabulary) float64, the sequence's last positions in order
    computed: float  # prompt tokens computed for it (a shared prefix's share included)


def group_by_prefix(needed: dict[Tokens, int]) -> list[tuple[Tokens, list[Tokens]]]:
    """Sequences in token order, cut into runs that each compute their common prefix once.

    In token order, sequences with a common prefix are neighbours, and a run's common prefix is
    the least of its neighbours' ones. A run of m sequences sharing p tokens saves (m - 1) * p
    tokens; the cut that saves the most is found by dynamic programming over the order. A
    sequence's last `needed` positions are read, so they are never part of a shared prefix.
    """
    ordered = sorted(needed)
    limits = [len(seq) - needed[seq] for seq in ordered]
    shared = [common_prefix(a, b) for a, b in zip(ordered, ordered[1:])]
    best = [0] * (len(ordered) + 1)  # tokens saved by the best cut of the first i sequences
    start = [0] * (len(ordered) + 1)  # where the last run of that cut starts
    for end in range(1, len(ordered) + 1):
        best[end], start[end] = best[end - 1], end - 1  # the last sequence alone
        prefix = limits[end - 1]
        for first in range(end - 2, -1, -1):
            prefix = min(prefix, shared[first], limits[first])
            if prefix == 0:
                break
            saved = best[first] + (end - first - 1) * prefix
            if saved > best[end]:
                best[end], start[end] = saved, first
    runs: list[tuple[Tokens, list[Tokens]]] = []
    end = len(ordered)
    while end > 0:
        members = ordered[start[end]: end]
        length = min([limits[i] for i in range(start[end], end)] + shared[start[end]: end - 1])
        runs.append((members[0][:length], members))
        end = start[end]
    return runs[::-1]


def reuse_refusal(model: Any) -> str | None:
    """None when a DynamicCache of full layers holds this model's state, else why not."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") \
        else model.config
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    types = set(getattr(config, "layer_types", None) or ())
    if types - REUSABLE_LAYERS:
        return f"layer types {', '.join(sorted(types - REUSABLE_LAYERS))} are not plain attention"
    return None


class Passes:
    """Forward passes of one loaded model for scoring: plain (left-padded batches) or with reuse."""

    def __init__(self, model: Any, pad_id: int, batch_size: int, store: PrefixStore | None) -> None:
        import inspect

        self.model = model
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.store = store  # None: no reuse
        base = model.base_model
        self.cache_kwarg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        self.head = model.get_output_embeddings()
        self.split_head = self.head is not None
        self.softcap = getattr(model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config")
                               else model.config, "final_logit_softcapping", None)

    # -- the pieces --------------------------------------------------------------------------------
    def check_head(self) -> str | None:
        """None when the base model and the output head (with the config's soft-capping) give the
        model's own logits; else why not (a model that scales its logits otherwise), and the
        passes take the model's logits instead."""
        import torch

        ids = torch.tensor([[1, 2, 3]], device=self.model.device)
        with torch.inference_mode():
            whole = self.model(input_ids=ids, use_cache=False).logits[0].double()
            split = self._run(ids, None, None, None, [(0, 3)])[0]
        gap = float((torch.log_softmax(whole, dim=-1) - split).abs().max())
        if gap > 1e-3:
            self.split_head = False
            return f"base model + output head differ from the model's logits by {gap:.2g}"
        return None

    def _run(self, ids: Any, mask: Any, positions: Any, cache: Any, spans: list[tuple[int, int]]) -> list[Any]:
        """One forward pass; per row, the float64 log-probabilities of positions [start, end)
        (no spans: the pass only fills the cache).

        With the split head, the head runs one position at a time, so that its rounding does not
        depend on the batch; the vocabulary's log-sum-exp is float64 either way.
        """
        import torch

        kwargs: dict[str, Any] = {self.cache_kwarg: cache, "use_cache": cache is not None,
                                  "input_ids": ids, "attention_mask": mask, "position_ids": positions}
        if not self.split_head:
            first = min((start for start, _ in spans), default=ids.shape[1] - 1)
            logits = self.model(**kwargs, logits_to_keep=ids.shape[1] - first).logits
            return [torch.log_softmax(logits[row, start - first: end - first].double(), dim=-1)
                    for row, (start, end) in enumerate(spans)]
        hidden = self.model.base_model(**kwargs).last_hidden_state
        results = []
        for row, (start, end) in enumerate(spans):
            logits = torch.cat([self.head(hidden[row, at: at + 1]) for at in range(start, end)]).double()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            results.append(torch.log_softmax(logits, dim=-1))
        return results

    def _cache(self, layers: list[tuple[Any, Any]] | None, length: int, rows: int) -> Any:
        """A fresh DynamicCache of `rows` copies of the first `length` tokens of an entry."""
        from transformers import DynamicCache

        if layers is None or length == 0:
            return DynamicCache()
        # DynamicLayer.update concatenates, so the new cache owns its tensors: the entry stays as is.
        return DynamicCache([(k[:, :, :length].expand(rows, -1, -1, -1), v[:, :, :length].expand(rows, -1, -1, -1))
                             for k, v in layers])

    @staticmethod
    def _layers(cache: Any) -> list[tuple[Any, Any]]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    # -- generation: one prompt ---------------------------------------------------------------------
    def cache_for(self, prompt: Sequence[int]) -> tuple[Any, int]:
        """A cache holding the longest stored prefix of a prompt to generate from (its last token
        is left to compute: its logits give the first new token), and that prefix's length."""
        assert self.store is not None
        layers, found = self.store.longest(prompt, len(prompt) - 1)
        return self._cache(layers, found, 1), found

    def remember(self, prompt: Sequence[int], cache: Any) -> None:
        """Keep a generation's prompt part of its cache (the generated tokens are not kept)."""
        assert self.store is not None
        self.store.keep(tuple(prompt), [(k[:, :, : len(prompt)], v[:, :, : len(prompt)])
                                        for k, v in self._layers(cache)])

    # -- plain: every sequence computed whole ------------------------------------------------------
    def plain(self, needed: dict[Tokens, int]) -> dict[Tokens, Scored]:
        """Left-padded batches of similar lengths, no cache: the computation reuse is checked against."""
        import torch

        scored: dict[Tokens, Scored] = {}
        ordered = sorted(needed, key=len)  # similar lengths together: less padding
        for at in range(0, len(ordered), self.batch_size):
            chunk = ordered[at: at + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(chunk):
                ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq):] = 1
            device = self.model.device
            spans = [(width - needed[seq], width) for seq in chunk]
            rows = self._run(ids.to(device), mask.to(device), (mask.cumsum(-1) - 1).clamp(min=0).to(device), None,
                             spans)
            for seq, logprobs in zip(chunk, rows):
                scored[seq] = Scored(logprobs, float(len(seq)))
        return scored

    # -- with reuse --------------------------------------------------------------------------------
    def reusing(self, needed: dict[Tokens, int]) -> dict[Tokens, Scored]:
        """Each group of sequences with a common prefix: the prefix once, the suffixes batched."""
        assert self.store is not None
        scored: dict[Tokens, Scored] = {}
        for prefix, members in group_by_prefix(needed):
            if len(members) == 1:
                seq = members[0]
                scored[seq] = self._extend(seq, needed[seq])
                continue
            layers, computed = self._prefix(prefix)
            share = computed / len(members)
            for at in range(0, len(members), self.batch_size):
                chunk = members[at: at + self.batch_size]
                for seq, logprobs in zip(chunk, self._suffixes(layers, prefix, chunk, needed)):
                    scored[seq] = Scored(logprobs, share + len(seq) - len(prefix))
        return scored

    def _prefix(self, prefix: Tokens) -> tuple[list[tuple[Any, Any]], int]:
        """The cache of `prefix` (from the store, extended where it falls short) and the tokens computed."""
        import torch

        assert self.store is not None
        layers, found = self.store.longest(prefix, len(prefix))
        if found == len(prefix) and layers is not None:
            return [(k[:, :, :found], v[:, :, :found]) for k, v in layers], 0
        cache = self._cache(layers, found, 1)
        device = self.model.device
        rest = torch.tensor([prefix[found:]], dtype=torch.long, device=device)
        positions = torch.arange(found, len(prefix), device=device).unsqueeze(0)
        self._run(rest, None, positions, cache, [])
        grown = self._layers(cache)
        self.store.keep(prefix, grown)
        return grown, len(prefix) - found

    def _suffixes(self, layers: list[tuple[Any, Any]], prefix: Tokens, chunk: list[Tokens],
                  needed: dict[Tokens, int]) -> list[Any]:
        """The chunk's suffixes after `prefix`, right-padded in one pass on copies of its cache.

        Right padding needs no attention mask: a causal token never sees the padding after it.
        """
        import torch

        start = len(prefix)
        width = max(len(s) for s in chunk) - start
        ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq) - start] = torch.tensor(seq[start:], dtype=torch.long)
        device = self.model.device
        positions = (torch.arange(width, device=device) + start).unsqueeze(0).expand(len(chunk), -1)
        spans = [(len(seq) - start - needed[seq], len(seq) - start) for seq in chunk]
        return self._run(ids.to(device), None, positions, self._cache(layers, start, len(chunk)), spans)

    def _extend(self, seq: Tokens, keep: int) -> Scored:
        """One sequence from the longest stored prefix; its whole cache is stored for the next."""
        import torch

        assert self.store is not None
        layers, found = self.store.longest(seq, len(seq) - keep)
        cache = self._cache(layers, found, 1)
        device = self.model.device
        rest = torch.tensor([seq[found:]], dtype=torch.long, device=device)
        positions = torch.arange(found, len(seq), device=device).unsqueeze(0)
        logprobs = self._run(rest, None, positions, cache, [(len(rest[0]) - keep, len(rest[0]))])[0]
        self.store.keep(seq, self._layers(cache))
        return Scored(logprobs, float(len(seq) - found))
