"""Options declared once: flag, environment variable, ini key, default, help and checks from one field."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import BenchRun

from harness.core.settings import Settings, defaults, options, resolve_values
from harness.suites import extraction, mmlu, vue


def values(cls: type = Settings, prefix: str = "", **given: str):
    by_cli = {f"--{prefix + '-' if prefix else ''}{k.replace('_', '-')}": v for k, v in given.items()}
    return resolve_values(lambda opt: (by_cli[opt.cli], opt.cli) if opt.cli in by_cli else None, cls, prefix)


def test_every_field_is_an_option_with_its_default_in_the_help() -> None:
    declared = {opt.name: opt for opt in options()}
    assert set(declared) == set(Settings.__dataclass_fields__)
    assert declared["seed"].help.endswith("(default: 0)")
    mode = {opt.name: opt for opt in options(mmlu.Options, "mmlu")}["mode"]
    assert (mode.cli, mode.env, mode.ini) == ("--mmlu-mode", "HARNESS_MMLU_MODE", "harness_mmlu_mode")
    assert mode.help.endswith("(default: auto; one of auto, loglikelihood, generate)")
    assert declared["cache"].help.endswith("(default: off)") and declared["cache"].spec.flag
    assert (declared["retries"].env, declared["retries"].ini) == ("HARNESS_RETRIES", "harness_retries")
    assert defaults() == Settings()


def test_settings_hold_only_harness_wide_options() -> None:
    # Every suite's options live with its Suite (harness/suites/<name>.py), none in Settings.
    assert not [name for name in Settings.__dataclass_fields__
                if name.split("_")[0] in ("mmlu", "gsm8k", "extraction", "vue", "mbpp", "humaneval", "memory")]
    # 25 before #22 added the harness-wide --decide, --margin, --decide-alpha, --route-thresholds,
    # --route-target and --generation-confidence (GSM8K's and MMLU's alike), #21 --shard and --shard-count,
    # and #20 --router-calculator (the router's, beside --router-max-turns and --router-tool-choice).
    assert len(Settings.__dataclass_fields__) <= 34


def test_values_convert_by_type() -> None:
    s = values(samples="3", call_timeout="2.5", models="a, b,")
    assert (s.samples, s.call_timeout, s.models) == (3, 2.5, ("a", "b"))
    e = values(extraction.Options, "extraction", data="x.csv")
    assert e.data == Path("x.csv") and e.csv == Path("x.csv")
    assert values(vue.Options, "vue", mode="single,agent").mode == ("single", "agent")


@pytest.mark.parametrize(("suite", "name", "raw", "message"), [
    (None, "samples", "-3", "--samples: bad value '-3': --samples must be at least 1"),
    (None, "samples", "three", "invalid literal for int"),
    (mmlu.SUITE, "split", "training", "--mmlu-split: bad value 'training': --mmlu-split takes test, val or dev"),
    (vue.SUITE, "mode", "single,solo", "--vue-mode takes single and/or agent"),
    (None, "call_timeout", "0", "--call-timeout must be at least 0.001"),
    (None, "fail_on_wrong", "maybe", "expected true/false"),
])
def test_bad_values_name_the_option(suite, name: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        if suite is None:
            values(**{name: raw})
        else:
            values(suite.options, suite.option_prefix, **{name: raw})


def test_resume_and_another_run_id_conflict() -> None:
    with pytest.raises(ValueError, match="name different runs"):
        values(resume="a", run_id="b")


def test_a_bad_value_stops_pytest_with_exit_4(bench: BenchRun, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: --samples -3 ended in a ValueError from random.sample, deep in collection.
    result = bench("--models", "oracle", "--samples", "-3")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--samples: bad value '-3': --samples must be at least 1*"])
    monkeypatch.setenv("HARNESS_MMLU_MODE", "guess")
    result = bench("--models", "oracle")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*HARNESS_MMLU_MODE: bad value 'guess'*"])
