"""Settings resolve once into a frozen object: command line > environment > ini > defaults.

Each option is declared once, as a field of `Settings`: its type, default, help text and checks.
That one declaration gives the flag `--name-with-dashes`, the environment variable `HARNESS_NAME`,
the ini key `harness_name`, the help text with the default filled in, and the validation; a new
setting is one field here.

`Settings` holds the harness-wide options only. A suite declares its own the same way, in a frozen
dataclass of `option(...)` fields that its Suite (harness/suites/unit.py) names with its prefix: the field
`mode` of the prefix `mmlu` is `--mmlu-mode`, `HARNESS_MMLU_MODE` and `harness_mmlu_mode`.
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


def _two_variants(value: str) -> tuple[str, ...]:
    pair = _csv(value)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError("takes two different variants A,B: a model name, or strategy:model")
    return pair


def _fraction(value: str | float) -> float:
    number = float(value)
    if not 0 < number < 0.5:
        raise ValueError("takes a number between 0 and 0.5, such as 0.05")
    return number


def _share(value: str | float) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise ValueError("takes a share between 0 and 1, such as 0.95")
    return number


def _points(value: str | float) -> float:
    number = float(value)
    if not 0 < number < 100:
        raise ValueError("takes accuracy points between 0 and 100, such as 5")
    return number


def _thresholds(value: str) -> tuple[float, ...]:
    numbers = tuple(float(part) for part in _csv(value))
    if not numbers or any(not 0 <= t <= 1 for t in numbers):
        raise ValueError("takes confidence thresholds between 0 and 1, comma-separated, such as 0.3,0.6")
    return numbers


def _bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _shard_text(value: str) -> str:
    from harness.run.shard import parse_shard  # checked here, kept as text: the session builds the Shard

    return parse_shard(str(value)).label


@dataclass(frozen=True)
class Spec:
    """How one setting reads and checks its value (kept in the field's metadata)."""

    help: str
    convert: Callable[[Any], Any] | None = None  # None: from the field's type
    choices: tuple[str, ...] = ()  # allowed values (for a list, allowed for each element)
    minimum: float | None = None
    flag: bool = False  # a store_true switch with a --no- twin
    shown_default: str | None = None  # the default as help shows it, where the value is None
    aliases: tuple[str, ...] = ()  # older flags that still work, such as --memory


def option(help: str, default: Any = None, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class Settings:
    # -- selection and data size
    models: tuple[str, ...] | None = option(
        "models to run, by name or tier, comma-separated ('all': every model but the test doubles)",
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
    # -- beyond one machine (harness/run/shard.py)
    shard: str | None = option("run shard I of N (I from 0): the cases whose SHA-256 of the case id is I mod N; "
                               "all shards take one --run-id and --store, `harness report --store URI RUN` "
                               "merges them", convert=_shard_text,
                               shown_default="JOB_COMPLETION_INDEX/--shard-count, SLURM_ARRAY_TASK_ID/"
                                             "SLURM_ARRAY_TASK_COUNT, else the whole run")
    shard_count: int | None = option("the number of shards where the scheduler gives only the index "
                                     "(a Kubernetes Indexed Job's completions)", minimum=1)
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
    # -- a decision by sequential paired testing (harness/run/decide.py)
    decide: tuple[str, ...] | None = option(
        "A,B: run both variants (a model name, or strategy:model) on items in a seeded random order and stop "
        "each suite as soon as it is known whether A is worse than B by more than --margin", convert=_two_variants)
    margin: float = option("the --decide margin D in accuracy points: 'A is not worse than B by more than D'",
                           5.0, convert=_points)
    decide_alpha: float = option("the --decide error rate, held at every look", 0.05, convert=_fraction)
    # -- routing on the small model's confidence (harness/core/confidence.py, harness/report/routes.py)
    route_thresholds: tuple[float, ...] | None = option(
        "thresholds T of the live threshold router (pair strategy threshold:T, with --small-model and "
        "--large-model): the small model answers when its confidence >= T, else the large one", convert=_thresholds)
    generation_confidence: bool = option(
        "score each generated answer (GSM8K, MMLU by generation) once more as a continuation of its prompt: its mean "
        "token log-probability is the record's confidence (one more forward pass, counted in the case's usage; "
        "backends with log-likelihoods only)", False, flag=True)
    route_target: float = option("the routing lab's target: the cheapest threshold that keeps this share of the "
                                 "large model's accuracy", 0.95, convert=_share)
    # -- in-process scoring and pair strategies (any suite that uses them)
    score_batch: int = option("loglikelihood questions of one model scored together in one call by in-process "
                              "backends, each still its own case and record (0 or 1: one at a time; llama.cpp's "
                              "batched kernels round differently, so about 1 answer in 20 near a tie can flip)",
                              1, minimum=0)
    router_max_turns: int = option("model turns the delegation router may take", 4, minimum=1)
    router_tool_choice: str = option("the router's first turn: auto (the large model decides) or required (it "
                                     "must call ask_small_model; later turns are auto)", "auto",
                                     choices=("auto", "required"))
    router_calculator: bool = option("give the router's large model a second tool, calculate(expression): "
                                     "arithmetic, evaluated safely", False, flag=True)
    cascade_variants: int = option("tries of the small model in the cascade before the large one answers "
                                   "(2: greedy, then one sample)", 2, minimum=1)
    # -- generated code: the sandbox and the code strategy (harness/strategies/code.py)
    code_samples: int = option("samples per code problem for pass@k (1: greedy; more are drawn at "
                               "temperature 0.8)", 1, minimum=1)
    code_max_tokens: int = option("most tokens of a code answer", 256, minimum=1)
    code_timeout: float = option("seconds a generated program may run in the sandbox", 10.0, minimum=0.001)
    sandbox: str = option("sandbox for generated code: auto (the strongest that works here: bwrap, else "
                          "unshare), bwrap, unshare, or rlimits (unisolated, limits only: never chosen by auto)",
                          "auto", choices=("auto", "bwrap", "unshare", "rlimits"))
    # -- task files (harness/suites/taskfile.py)
    task: tuple[str, ...] | None = option("task files (TOML or YAML) or folders of them to run as suites, "
                                          "comma-separated (benchmarks/test_tasks.py)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Option:
    """One setting as the command line, the environment and the ini file see it."""

    name: str  # attribute of Settings (or of a suite's options)
    spec: Spec
    default: Any
    kind: Any  # the field's type
    prefix: str = ""  # a suite's prefix: its options are --<prefix>-<name>

    @property
    def key(self) -> str:
        """The option's name with its prefix: the key of run metadata's settings."""
        return f"{self.prefix}_{self.name}" if self.prefix else self.name

    @property
    def cli(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "HARNESS_" + self.key.upper()

    @property
    def ini(self) -> str:
        return "harness_" + self.key

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
def options(cls: type = Settings, prefix: str = "") -> tuple[Option, ...]:
    """The options a dataclass of `option(...)` fields declares (Settings, or a suite's with its prefix)."""
    hints = typing.get_type_hints(cls)
    return tuple(Option(f.name, f.metadata["spec"], f.default, hints[f.name], prefix) for f in fields(cls))


def add_options(parser: pytest.Parser, cls: type = Settings, prefix: str = "",
                group: tuple[str, str] = ("harness", "LLM benchmark harness")) -> None:
    section = parser.getgroup(*group)
    for opt in options(cls, prefix):
        if opt.spec.flag:
            section.addoption(opt.cli, *opt.spec.aliases, action="store_true", default=None, dest=opt.ini,
                              help=f"{opt.help} [env {opt.env}]")
            section.addoption("--no-" + opt.cli[2:], action="store_false", dest=opt.ini, help=f"turn {opt.cli} off")
        else:
            section.addoption(opt.cli, *opt.spec.aliases, default=None, dest=opt.ini,
                              help=f"{opt.help} [env {opt.env}]")
        parser.addini(opt.ini, help=opt.help, default=None)


def given(config: pytest.Config, cls: type = Settings, prefix: str = "") -> bool:
    """Whether any of these options is set on the command line or in the ini file (not merely in the
    environment, which other projects share): the sign that a session means to use the harness."""
    return any(config.getoption(opt.ini) is not None or config.getini(opt.ini) not in (None, "", [])
               for opt in options(cls, prefix))


def resolve_values(lookup: Callable[[Option], tuple[Any, str] | None], cls: type = Settings,
                   prefix: str = "") -> Any:
    """Settings (or a suite's options) from a source of raw values: lookup(option) gives (raw value,
    where it came from) or None; a bad value raises ValueError naming its source and the option."""
    values: dict[str, Any] = {}
    for opt in options(cls, prefix):
        found = lookup(opt)
        if found is None:
            values[opt.name] = opt.default
            continue
        raw, source = found
        try:
            values[opt.name] = opt.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad value {raw!r}: {exc}") from None
    if cls is not Settings:
        return cls(**values)
    if values["resume"] is not None and values["run_id"] not in (None, values["resume"]):
        raise ValueError(f"--resume {values['resume']} and --run-id {values['run_id']} name different runs; "
                         "give one")
    return Settings(**values)


def resolve(config: pytest.Config, cls: type = Settings, prefix: str = "") -> Any:
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
        return resolve_values(lookup, cls, prefix)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def defaults(cls: type = Settings, prefix: str = "") -> Any:
    """Every setting at its default (for scripts and tests outside pytest)."""
    return resolve_values(lambda opt: None, cls, prefix)

