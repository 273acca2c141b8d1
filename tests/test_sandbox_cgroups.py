"""Control groups for the sandbox: the real ones this machine has, and the v2 file layout."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.sandbox import cgroups
from harness.sandbox.cgroups import Cgroup


def test_a_real_group_limits_and_kills_everything_in_it() -> None:
    group = Cgroup.create(f"harness-sandbox-{os.getpid()}-test")
    if group is None:
        pytest.skip("no control group can be created here (not root, no delegation)")
    try:
        group.limit(64 << 20, 8)
        # A shell joins the group, then leaves daemons in new sessions behind.
        script = "".join(f"echo $$ > {p}; " for p in group.procs_files) + \
            "for i in 1 2 3; do setsid sleep 300 & done; exec sleep 300"
        shell = subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True)
        deadline = time.monotonic() + 5
        while len(group.processes()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(group.processes()) == 4
        group.kill()
        assert group.processes() == []
        shell.wait(timeout=5)
    finally:
        group.remove()
    assert not any(folder.exists() for folder in group.folders)


def test_v2_layout_next_to_the_own_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for /sys/fs/cgroup (v2): the files the kernel offers, as plain files.
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "system.slice").mkdir()
    (tmp_path / "system.slice" / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "system.slice" / "cgroup.subtree_control").write_text("memory pids\n")
    (tmp_path / "system.slice" / "harness-sandbox-999999999-0").mkdir()  # a dead harness's group
    monkeypatch.setattr(cgroups, "MOUNT", tmp_path)
    monkeypatch.setattr(cgroups, "_own_paths", lambda: {"": "/system.slice/ci.service"})
    monkeypatch.setattr(cgroups.os, "geteuid", lambda: 0)
    group = Cgroup.create("harness-sandbox-1-0")
    assert group is not None and group.version == 2
    assert group.folders == [tmp_path / "system.slice" / "harness-sandbox-1-0"]
    assert not (tmp_path / "system.slice" / "harness-sandbox-999999999-0").exists()
    folder = group.folders[0]
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    group.limit(300 << 20, 66)
    assert (folder / "memory.max").read_text() == str(300 << 20)
    assert (folder / "pids.max").read_text() == "66"
    assert (folder / "memory.swap.max").read_text() == "0"
    assert not group.memory_limit_hit()
    (folder / "memory.events").write_text("oom_kill 2\n")
    assert group.memory_limit_hit() and not group.memory_limit_hit()
    assert group.procs_files == [folder / "cgroup.procs"]
