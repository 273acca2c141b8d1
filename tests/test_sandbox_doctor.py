"""`harness doctor` on the sandbox: the level auto picks, and what every level protects and not."""

from __future__ import annotations

import shutil

import pytest

from harness.commands.doctor import check_sandbox
from harness.sandbox.isolation import LEVELS


def test_doctor_states_what_each_level_protects_and_what_not() -> None:
    findings = {f.name: f for f in check_sandbox()}
    chosen = findings["isolation"]
    assert not chosen.seen.startswith("UNISOLATED")  # auto never picks the unisolated level
    for level in LEVELS:
        finding = findings[f"level {level}"]
        assert "protects: " in finding.seen and ". Does not: " in finding.seen
        assert finding.ok or finding.fix
    assert "UNISOLATED" in findings["level rlimits"].seen
    if chosen.ok and not chosen.seen.startswith("bwrap"):  # install advice only where it is missing
        assert ("apt-get install bubblewrap" in chosen.fix) == (shutil.which("bwrap") is None), chosen.fix


def test_without_bubblewrap_the_fallback_is_isolated_and_the_user_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import sandbox as sandbox_module

    if not shutil.which("unshare"):
        pytest.skip("no util-linux unshare here")
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, **kw: None if name == "bwrap" else real(name, **kw))
    monkeypatch.setattr(sandbox_module, "_plans", {})  # choose again, as a fresh process would
    try:
        with pytest.warns(UserWarning, match="not bwrap .*apt-get install bubblewrap"):
            box = sandbox_module.Sandbox()
    except sandbox_module.SandboxError as error:  # no namespaces at all here: the error names the fix
        assert "apt-get install bubblewrap" in str(error)
        return
    assert box.isolation.level == "unshare" and box.isolation.isolated
    assert box.run("assert 1 + 1 == 2").passed
    box.close()
    chosen = {f.name: f for f in check_sandbox()}["isolation"]
    assert chosen.seen.startswith("unshare") and "apt-get install bubblewrap" in chosen.fix
