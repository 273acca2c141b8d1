"""`harness doctor` on the sandbox: the level auto picks, and what every level protects and not."""

from __future__ import annotations

from harness.doctor import check_sandbox
from harness.isolation import LEVELS


def test_doctor_states_what_each_level_protects_and_what_not() -> None:
    findings = {f.name: f for f in check_sandbox()}
    chosen = findings["isolation"]
    assert not chosen.seen.startswith("UNISOLATED")  # auto never picks the unisolated level
    for level in LEVELS:
        finding = findings[f"level {level}"]
        assert "protects: " in finding.seen and ". Does not: " in finding.seen
        assert finding.ok or finding.fix
    assert "UNISOLATED" in findings["level rlimits"].seen
    if chosen.ok and not chosen.seen.startswith("bwrap"):
        assert "apt-get install bubblewrap" in chosen.fix
