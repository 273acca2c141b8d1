"""`harness doctor` on this machine: real checks, with a closed port standing in for Ollama."""

from __future__ import annotations

import pytest

from harness.commands.cli import main
from harness.commands.doctor import run_checks


def test_findings_cover_every_area_and_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    findings = {(f.area, f.name): f for f in run_checks()}
    assert {area for area, _ in findings} >= {"python", "package", "model", "gpu", "sandbox", "node"}
    assert findings[("model", "oracle")].ok
    tinyllama = findings[("model", "tinyllama")]
    assert not tinyllama.ok and "127.0.0.1:9" in tinyllama.seen
    gpt = findings[("model", "gpt-4o")]
    assert not gpt.ok and "OPENAI_API_KEY" in gpt.seen + gpt.fix
    sandbox = findings[("sandbox", "isolation")]
    assert sandbox.seen and (sandbox.ok or "network" in sandbox.fix)
    for finding in findings.values():
        assert finding.ok or finding.fix or "`" in finding.seen or "pip install" in finding.seen


def test_doctor_starts_each_default_llama_model_in_its_host_and_says_what_the_probe_chose() -> None:
    from harness.models.registry import DEFAULT_REGISTRY, availability, load_registry

    spec = load_registry([DEFAULT_REGISTRY])["gemma3-270m-q4"]
    if availability(spec) is not None:
        pytest.skip(f"gemma cannot run here: {availability(spec)}")
    findings = {(f.area, f.name): f for f in run_checks()}
    host = findings[("host", "gemma3-270m-q4")]
    assert host.ok, host.seen
    # Off only where a probe decode with them crashed the host (llama.cpp's AMX path on some CPUs).
    assert ("extra buffer types off" in host.seen) == ("crashed the host" in host.seen)
    assert ("extra buffer types on" in host.seen) == ("a probe decode with them worked" in host.seen)
    assert "RSS after load" in host.seen and ("host", "smollm2-135m") in findings


def test_cli_exit_code_follows_the_default_model(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from harness.models.registry import DEFAULT_REGISTRY, availability, load_registry

    runs_here = availability(load_registry([DEFAULT_REGISTRY])["gemma3-270m-q4"]) is None
    assert main(["doctor"]) == (0 if runs_here else 1)
    out = capsys.readouterr().out
    assert "gemma3-270m-q4" in out and ("can go ahead" in out) == runs_here


def test_node_tool_versions_and_every_vue_reference_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    from vue_support import requires_vue_tools

    if requires_vue_tools.args[0]:
        pytest.skip(requires_vue_tools.kwargs["reason"])
    from harness.commands import doctor
    from harness.suites import vue

    node = {f.name: f for f in doctor.check_node()}
    assert node["node"].ok and node["node"].seen.startswith("v")
    assert (node["vue-tsc"].ok, node["vue-tsc"].seen) == (True, "3.3.14")
    assert (node["typescript"].ok, node["typescript"].seen) == (True, "5.9.3")
    # Every reference in one project copy, one vue-tsc run: a finding per case.
    items = vue.load()
    findings = {f.name: f for f in doctor.check_vue_fixtures()}
    assert {f"reference {i.id}" for i in items} <= set(findings)
    assert all(f.ok for f in findings.values()), [f for f in findings.values() if not f.ok]
    # A reference that stopped compiling is named, with its line and error code.
    broken = [i if i.id != "rating-input" else type(i)(i.id, i.input, i.reference.replace(
        "function rate(star: number): void {", "function rate(star: string): void {"), i.meta) for i in items]
    monkeypatch.setattr(vue, "load", lambda: broken)
    bad = {f.name: f for f in doctor.check_vue_fixtures()}["reference rating-input"]
    assert not bad.ok and "TS2345" in bad.seen and "fixtures/vue/cases/rating-input/reference.vue" in bad.fix
