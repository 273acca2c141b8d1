"""The resource monitor: CPU time and memory of a process tree, and GPU memory by PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from typing import Any

import pytest

from harness.monitor import sampler as monitor_module
from harness.monitor.sampler import Monitor


def test_cpu_time_and_rss_are_those_of_the_sampled_process_only() -> None:
    # A child that burns CPU and holds ~200 MB; this process stays idle.
    code = ("import time\nx = bytearray(200 * 2**20)\nend = time.time() + 1.0\nwhile time.time() < end: pass\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        with Monitor([child.pid], interval=0.05, gpus=False, children=False) as mon:
            time.sleep(1.5)  # it is alive at the window's end: its counters can be read
        summary = mon.summary()
    finally:
        child.kill()
    assert 0.05 < summary.cpu_s <= 2 * summary.duration_s + 0.1  # the child's busy second, not ours
    assert summary.rss_peak_mb is not None and 150 < summary.rss_peak_mb < 600


def test_user_and_system_cpu_time_are_told_apart() -> None:
    # One child spins in Python (user time); the other asks the kernel for work (system time:
    # fresh pages zeroed and given back, over and over).
    user_code = "import time\nend = time.time() + 0.8\nwhile time.time() < end: pass\ntime.sleep(60)\n"
    system_code = ("import mmap, time\nend = time.time() + 0.8\nwhile time.time() < end:\n"
                   "    m = mmap.mmap(-1, 64 * 2**20)\n    m[::4096] = b'x' * (64 * 2**20 // 4096)\n    m.close()\n"
                   "time.sleep(60)\n")
    summaries = []
    for code in (user_code, system_code):
        child = subprocess.Popen([sys.executable, "-c", code])
        try:
            with Monitor([child.pid], interval=0.05, gpus=False, children=False) as mon:
                time.sleep(1.3)
            summaries.append(mon.summary())
        finally:
            child.kill()
    spin, kernel = summaries
    for summary in summaries:
        assert summary.cpu_s == pytest.approx(summary.cpu_user_s + summary.cpu_system_s)
        assert summary.cpu_s > 0.1
    assert spin.cpu_user_s > 4 * spin.cpu_system_s
    assert kernel.cpu_system_s > spin.cpu_system_s and kernel.cpu_system_s > 0.1


class _FakeNvml(types.SimpleNamespace):
    """NVML as pynvml shows it: one GPU, two compute processes (ours and another's)."""

    def __init__(self, ours: int, theirs: int) -> None:
        proc = types.SimpleNamespace
        handle = object()
        super().__init__(
            nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1,
            nvmlDeviceGetHandleByIndex=lambda i: handle,
            nvmlDeviceGetTotalEnergyConsumption=lambda h: 1000,
            nvmlDeviceGetUtilizationRates=lambda h: proc(gpu=50),
            nvmlDeviceGetMemoryInfo=lambda h: proc(used=9000 * 2**20),
            nvmlDeviceGetPowerUsage=lambda h: 100_000,
            nvmlDeviceGetComputeRunningProcesses=lambda h: [proc(pid=ours, usedGpuMemory=1500 * 2**20),
                                                            proc(pid=theirs, usedGpuMemory=7000 * 2**20)])


def test_gpu_memory_of_the_sampled_processes_is_told_apart_from_the_whole_gpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake: Any = _FakeNvml(ours=os.getpid(), theirs=os.getpid() + 1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(monitor_module, "_NVML", [])
    with Monitor([os.getpid()], interval=0.02, children=False) as mon:
        time.sleep(0.2)
    [gpu] = mon.summary().gpu
    assert gpu["memory_peak_mb"] == pytest.approx(9000)  # the whole GPU, every process on it
    assert gpu["process_memory_peak_mb"] == pytest.approx(1500)  # this tree's own, by PID
    monkeypatch.setattr(monitor_module, "_NVML", [])


def test_a_windows_readings_are_psutils_from_one_read_of_proc_stat() -> None:
    # The windows read /proc/<pid>/stat once per process (sampler._Counters); the figures are
    # the ones psutil reads from two files: CPU times to the clock tick, RSS to the page.
    import psutil

    code = ("import time\nx = bytearray(100 * 2**20)\nend = time.time() + 0.3\nwhile time.time() < end: pass\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.6)
        procs = [psutil.Process(os.getpid()), psutil.Process(child.pid)]
        counters = monitor_module._Counters()
        user, system, rss = counters.read(procs)
        times = [p.cpu_times() for p in procs]
        memory = sum(p.memory_info().rss for p in procs)
        user_after, system_after, _ = counters.read(procs)  # the kept descriptors read afresh
    finally:
        child.kill()
        child.wait()
    assert sum(t.user for t in times) - 0.02 <= user <= sum(t.user for t in times)
    assert sum(t.system for t in times) - 0.02 <= system <= sum(t.system for t in times)
    assert user_after >= user and system_after >= system and user > 0.2  # the child's busy 0.3 s
    assert abs(rss - memory) < 8 * 2**20 and rss > 100 * 2**20
    # A process that is gone counts no more; its descriptor is dropped.
    assert counters.read([procs[1]]) == (0.0, 0.0, 0)
    assert child.pid not in counters._fds
    counters.close()
    assert counters._fds == {}


def test_a_window_over_this_process_counts_its_cpu_time_and_memory() -> None:
    mon = Monitor([os.getpid()], interval=0.05, gpus=False, children=False).start()
    try:
        window = mon.window()
        end = time.process_time() + 0.3
        held = bytearray(50 * 2**20)
        while time.process_time() < end:
            pass
        summary = window.stop()
    finally:
        mon.stop()
    assert len(held) == 50 * 2**20
    assert 0.25 <= summary.cpu_s <= summary.duration_s + 0.05
    assert summary.cpu_s == pytest.approx(summary.cpu_user_s + summary.cpu_system_s)
    assert summary.samples >= 1 and summary.rss_peak_mb is not None and summary.rss_peak_mb > 50
    assert window.stop() is summary  # stopped once: the same figures again
