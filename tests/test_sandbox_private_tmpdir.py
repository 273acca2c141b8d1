"""The sandbox under a private temporary folder (issue 18, item 6).

A TMPDIR made by `mktemp -d` (mode 0700) or a per-user temporary folder is closed to every other
user. As root, the bwrap level runs bubblewrap as `nobody`, who must reach the folders staged for
an interpreter nobody can enter: each level still runs a program there, and a level that cannot
work says why, in words that fit (never "install bubblewrap" when it is installed).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness.sandbox as sandbox_module
import harness.sandbox.isolation as isolation
from harness.sandbox import Limits, Sandbox, SandboxError
from harness.sandbox.isolation import Plan, candidates, diagnose, jail_parent

LIMITS = Limits(timeout_s=5.0, memory_bytes=256 << 20, output_bytes=4096)
HONEST = "import os, tempfile\nassert sum(range(4)) == 6\nprint('fine', tempfile.gettempdir())\n"


@pytest.fixture
def private_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """TMPDIR set to a fresh `mktemp -d` folder, as a user who wants their temporary files private."""
    made = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    folder = Path(made)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the folder it chose first
    monkeypatch.setattr(sandbox_module, "_plans", {})  # each test probes the levels afresh
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hidden_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter in a venv inside a folder nobody can enter (as CI's venv under /root is),
    so that the bwrap level stages it whatever this machine's own interpreter is."""
    folder = tmp_path_factory.mktemp("closed")
    folder.chmod(0o700)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True,
                   capture_output=True, timeout=120)
    return str(folder / "venv" / "bin" / "python")


def _installed(level: str) -> bool:
    return any(plan.level == level for plan in candidates(level))


def _jail_folders() -> set[str]:
    """The harness's jail folders wherever they may go (TMPDIR or a shared temporary folder)."""
    found = set()
    for parent in {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}:
        if os.path.isdir(parent):
            found |= {str(p) for p in Path(parent).glob("harness-sandbox-*")}
    return found


@pytest.mark.parametrize("which", ["this-python", "hidden-venv"])
@pytest.mark.parametrize("level", ["bwrap", "unshare", "rlimits"])
def test_each_level_runs_under_a_private_tmpdir(level: str, which: str, private_tmpdir: Path,
                                                hidden_python: str) -> None:
    if not _installed(level):
        pytest.skip(f"the {level} level is not installed here")
    python = hidden_python if which == "hidden-venv" else None
    before = _jail_folders()
    box = Sandbox(LIMITS, level=level, python=python)  # fails on main: bwrap as root, hidden venv
    try:
        result = box.run(HONEST)
        assert (result.outcome, result.stdout.split()[0]) == ("pass", "fine"), result
        assert box.isolation.level == level
        if level != "rlimits":  # inside a jail the program's own temporary folder is private
            assert result.stdout.split()[1] == "/tmp/work"
        else:  # unisolated: the program works in a folder of the jail under TMPDIR
            assert result.stdout.split()[1].startswith(str(private_tmpdir) + "/harness-sandbox-")
    finally:
        box.close()
    assert _jail_folders() == before  # every jail folder the sandbox made is gone


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to nobody and stages an interpreter")
def test_the_jail_folder_leaves_a_private_tmpdir_only_when_nobody_must_reach_it(
        private_tmpdir: Path, hidden_python: str) -> None:
    bwrap, unshare = Plan("bwrap", as_root=True), Plan("unshare", as_root=True)
    assert jail_parent(bwrap, "/usr/bin/python3") == str(private_tmpdir)  # nothing staged: TMPDIR kept
    assert jail_parent(unshare, hidden_python) == str(private_tmpdir)  # only root touches it
    shared = jail_parent(bwrap, hidden_python)
    assert shared in ("/tmp", "/var/tmp", "/dev/shm")
    assert Path(shared).stat().st_mode & stat.S_IXOTH


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to nobody and stages an interpreter")
def test_no_folder_nobody_can_reach_names_the_folder_and_the_fix(
        private_tmpdir: Path, hidden_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "SHARED_TEMP_FOLDERS", ())
    with pytest.raises(PermissionError) as caught:
        jail_parent(Plan("bwrap", as_root=True), hidden_python)
    # The folder named is the first nobody cannot enter: TMPDIR, or one above it (this test may run
    # under a private TMPDIR itself).
    named = re.search(r"cannot enter the temporary folder (\S+) \(mode 700\)", str(caught.value))
    assert named is not None and Path(named.group(1)) in (private_tmpdir, *private_tmpdir.parents), caught.value
    assert "set TMPDIR to a folder others may pass through" in str(caught.value)
    if not _installed("bwrap"):
        return
    with pytest.raises(SandboxError) as failed:
        Sandbox(LIMITS, level="bwrap", python=hidden_python)
    assert f"bwrap: {caught.value}" in str(failed.value)
    assert "install bubblewrap" not in str(failed.value)  # it is installed: that fix would mislead


def test_bubblewraps_own_errors_get_their_cause() -> None:
    open_parent = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp_path lies in a 0700 folder
    open_parent.chmod(0o755)
    closed = open_parent / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    as_root = Plan("bwrap", as_root=True)
    line = diagnose(as_root, f"bwrap: Can't find source path {closed}/inner/python0: Permission denied")
    assert line.endswith(f"(nobody, the jail's user, cannot enter {closed}, mode 700)")
    userns = diagnose(Plan("bwrap", as_root=False), "bwrap: setting up uid map: Permission denied")
    assert "user namespaces" in userns
    assert diagnose(as_root, "bwrap: something else") == "bwrap: something else"
    shutil.rmtree(open_parent)


def test_install_bubblewrap_is_only_advised_where_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "_plans", {})
    failing = sandbox_module._StartError("bwrap: Creating new namespace failed: Operation not permitted")

    def refuse(*args: object, **kwargs: object) -> None:
        raise failing

    monkeypatch.setattr(sandbox_module._Worker, "start", classmethod(refuse))  # type: ignore[arg-type]
    monkeypatch.setattr(sandbox_module, "candidates", lambda level: [Plan("bwrap", as_root=False)])
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name, **kw: "/usr/bin/bwrap")
    with pytest.raises(SandboxError) as installed:
        Sandbox(LIMITS, level="bwrap")
    assert "Operation not permitted" in str(installed.value)
    assert "install bubblewrap" not in str(installed.value)
    monkeypatch.setattr(sandbox_module, "candidates", lambda level: [Plan("unshare", as_root=False)])
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name, **kw: None)
    with pytest.raises(SandboxError, match="install bubblewrap"):
        Sandbox(LIMITS, level="unshare")


def test_doctor_says_what_stops_an_installed_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.commands.doctor import check_sandbox

    if not _installed("bwrap") or not _installed("unshare"):
        pytest.skip("needs bubblewrap and util-linux's unshare")
    monkeypatch.setattr(sandbox_module, "_plans", {})
    # bubblewrap as a kernel that refuses user namespaces leaves it (Ubuntu 24.04's AppArmor default)
    refused = ["/bin/sh", "-c", "echo 'bwrap: setting up uid map: Permission denied' >&2; exit 1"]
    monkeypatch.setattr(isolation, "bwrap_argv", lambda *args: refused)
    with pytest.warns(UserWarning, match="not bwrap .*user namespaces") as warned:
        findings = {f.name: f for f in check_sandbox()}
    assert all("install bubblewrap" not in str(w.message) for w in warned)
    assert findings["isolation"].seen.startswith("unshare")
    assert "bubblewrap is installed" in findings["isolation"].fix
    bwrap = findings["level bwrap"]
    assert not bwrap.ok and "user namespaces" in bwrap.seen and "install bubblewrap" not in bwrap.seen + bwrap.fix
