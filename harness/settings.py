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
    Option("small_model", "the small model of pair strategies (cascade, delegation), by name"),
    Option("large_model", "the large model of pair strategies (cascade, delegation), by name"),
    Option("fail_on_wrong", "fail the test of every wrongly answered item", _bool, False, flag=True),
    Option("mmlu_data", "MMLU data: a folder in the authors' CSV layout, or hf:cais/mmlu "
           "(default: the project's sample in fixtures/mmlu)"),
    Option("mmlu_split", "MMLU split to evaluate: test, val or dev (default test)", str, "test"),
    Option("mmlu_subjects", "MMLU subjects, comma-separated (default: all in the data)", _csv),
    Option("mmlu_per_subject", "first N questions of each MMLU subject", int),
    Option("mmlu_shots", "few-shot examples from the dev split (default 0)", int, 0),
    Option("mmlu_mode", "auto (loglikelihood where the backend can), loglikelihood or generate",
           str, "auto"),
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
    small_model: str | None
    large_model: str | None
    fail_on_wrong: bool
    mmlu_data: str | None
    mmlu_split: str
    mmlu_subjects: tuple[str, ...] | None
    mmlu_per_subject: int | None
    mmlu_shots: int
    mmlu_mode: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "LLM benchmark harness")
    for opt in OPTIONS:
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=opt.ini, help=opt.help)
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
    return Settings(**values)
