"""Resource monitor: a background sampler of the process tree doing the inference, and GPUs.

Usable on its own:

    with Monitor([pid], interval=0.1) as mon:
        ...work...
    print(mon.summary())

The plugin keeps one Monitor per process tree for the whole run and takes a `window()` per
case: starting a sampler thread per case would cost more than the case itself for fast
backends (about 1 ms on a busy 2-core machine); a window costs two readings, one of each
process's /proc/<pid>/stat at either end (its CPU times at the start, its CPU times and RSS at
the end), through a descriptor the Monitor keeps open per process.

CPU time comes from the processes' own counters at start and stop (exact, not sampled); CPU %,
RSS and GPU figures are sampled every `interval` seconds. psutil's first cpu_percent() of a
process is always 0.0 (it has nothing to compare with), so that reading is discarded. The tree
is re-read at every sample, so a server's child runner (Ollama starts one per model) counts as
soon as it appears. GPU energy comes from NVML's total-energy counter where the GPU has one.
The sampler measures its own CPU time, so its cost can be reported beside its figures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class _Gpu:
    handle: Any
    index: int
    energy_start_mj: int | None


_NVML: list[bool] = []  # initialized once per process: [True] when NVML is usable


def _gpus() -> list[_Gpu]:
    if _NVML == [False]:
        return []
    try:
        import pynvml  # nvidia-ml-py

        if not _NVML:
            pynvml.nvmlInit()
            _NVML.append(True)
    except Exception:  # no driver, no library, no GPU: nothing to sample
        _NVML[:] = [False]
        return []
    gpus = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            energy = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # older GPUs have no energy counter
            energy = None
        gpus.append(_Gpu(handle, index, energy))
    return gpus


def _process_memory_mb(pynvml: Any, handle: Any, pids: set[int]) -> float | None:
    """GPU memory held by these processes (by PID, as NVML lists a GPU's compute processes);
    None where NVML cannot say (no permission, a driver that reports no per-process figures)."""
    try:
        listed = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:
        return None
    used = [p.usedGpuMemory for p in listed if p.pid in pids]
    if any(value is None for value in used):
        return None
    return sum(int(value) for value in used) / 2**20


@dataclass
class Summary:
    duration_s: float = 0.0
    samples: int = 0
    cpu_s: float = 0.0  # user + system CPU time of the tree over the window
    # The two apart: system time is the kernel's share (page faults of a model being mapped in,
    # I/O, thread scheduling), which a user-time figure alone hides.
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    cpu_percent_mean: float | None = None  # 100 = one core busy
    cpu_percent_peak: float | None = None
    cpu_percent_per_core_mean: list[float] = field(default_factory=list)  # whole machine, per core
    rss_mean_mb: float | None = None
    rss_peak_mb: float | None = None
    gpu: list[dict[str, Any]] = field(default_factory=list)
    monitor_cpu_s: float = 0.0  # what the sampler itself cost

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _tree(roots: Iterable[psutil.Process], children: bool) -> list[psutil.Process]:
    procs = []
    for root in roots:
        procs.append(root)
        if children:  # scanning /proc for children costs about 1 ms: only for servers
            try:
                procs.extend(root.children(recursive=True))
            except psutil.Error:
                continue
    return procs


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Counters:
    """(user s, system s, RSS bytes) of processes, each from one read of its /proc/<pid>/stat:
    the figures psutil's cpu_times() and memory_info() read from two files, through several
    layers of Python, at about 15 microseconds a process (a case's window reads twice). The
    descriptor stays open per process; it belongs to that process, so a PID reused by another
    fails to read (the process is then read afresh). Where /proc cannot be read (not Linux), psutil."""

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}

    def read(self, procs: Iterable[psutil.Process]) -> tuple[float, float, int]:
        user = system = 0.0
        rss = 0
        for proc in procs:
            found = self._stat(proc.pid)
            if found is None:
                try:
                    with proc.oneshot():
                        times, memory = proc.cpu_times(), proc.memory_info()
                except psutil.Error:  # gone: it counts no more
                    continue
                found = (times.user, times.system, memory.rss)
            user += found[0]
            system += found[1]
            rss += found[2]
        return user, system, rss

    def _stat(self, pid: int) -> tuple[float, float, int] | None:
        fd = self._fds.get(pid)
        try:
            if fd is None:
                fd = self._fds[pid] = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
            data = os.pread(fd, 4096, 0)
            # After the command name, which may hold spaces and parentheses: the state (field 3),
            # ... utime (14) and stime (15) in clock ticks, ... rss (24) in pages.
            fields = data[data.rindex(b")") + 2:].split()
            return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS, int(fields[21]) * _PAGE
        except (OSError, ValueError, IndexError):
            self._drop(pid)
            return None

    def _drop(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for pid in list(self._fds):
            self._drop(pid)


@dataclass
class _Sample:
    cpu_percent: float | None  # None: a process in the tree had no earlier reading
    rss_mb: float
    percore: list[float] | None
    # (util %, memory MB, power W, memory MB of the sampled processes or None) per GPU; None where
    # that GPU's reading failed (left out of the figures: a failed reading is no measurement, and
    # 0 would pull the means down)
    gpus: list[tuple[float, float, float, float | None] | None]


class Window:
    """One stretch of a Monitor's samples: a case, or the Monitor's whole life."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.t0 = time.perf_counter()
        own0 = time.thread_time()
        self.user0, self.system0, _ = monitor.counters.read(monitor.processes())
        self.energy0 = [monitor.energy_mj(gpu) for gpu in monitor.gpus]
        self.first = monitor.latest()  # the window's samples are those taken after it opened
        self.own0 = monitor.own_cpu_s
        self.prime_s = time.thread_time() - own0
        self.result: Summary | None = None

    def stop(self) -> Summary:
        if self.result is not None:
            return self.result
        mon = self.monitor
        own0 = time.thread_time()
        last, user, system = mon.edge_sample()
        samples = mon.samples[self.first + 1 : last + 1]
        summary = Summary(duration_s=time.perf_counter() - self.t0, cpu_user_s=max(0.0, user - self.user0),
                          cpu_system_s=max(0.0, system - self.system0))
        summary.cpu_s = summary.cpu_user_s + summary.cpu_system_s
        cpu = [s.cpu_percent for s in samples if s.cpu_percent is not None]
        summary.samples = len(cpu)
        # The mean is exact, from CPU time over wall time; the peak needs samples.
        if summary.duration_s > 0:
            summary.cpu_percent_mean = 100.0 * summary.cpu_s / summary.duration_s
        if cpu:
            summary.cpu_percent_peak = max(cpu)
        percore = [s.percore for s in samples if s.percore is not None]
        if percore:
            summary.cpu_percent_per_core_mean = [sum(p[i] for p in percore) / len(percore)
                                                 for i in range(len(percore[0]))]
        rss = [s.rss_mb for s in samples]
        if rss:
            summary.rss_mean_mb = sum(rss) / len(rss)
            summary.rss_peak_mb = max(rss)
        for index, gpu in enumerate(mon.gpus):
            readings = [r for r in (s.gpus[index] for s in samples if len(s.gpus) > index) if r is not None]
            data: dict[str, Any] = {"index": gpu.index, "samples": len(readings)}
            if readings:
                data["util_mean"] = sum(r[0] for r in readings) / len(readings)
                data["util_peak"] = max(r[0] for r in readings)
                data["memory_mean_mb"] = sum(r[1] for r in readings) / len(readings)
                data["memory_peak_mb"] = max(r[1] for r in readings)
                data["power_mean_w"] = sum(r[2] for r in readings) / len(readings)
                own = [r[3] for r in readings if r[3] is not None]
                if own:  # the memory of this tree's processes alone (a model host's), by PID
                    data["process_memory_mean_mb"] = sum(own) / len(own)
                    data["process_memory_peak_mb"] = max(own)
            end, start = mon.energy_mj(gpu), self.energy0[index]
            if end is not None and start is not None:
                data["energy_j"] = (end - start) / 1000.0
            summary.gpu.append(data)
        summary.monitor_cpu_s = (mon.own_cpu_s - self.own0) + self.prime_s + time.thread_time() - own0
        self.result = summary
        return summary


class Monitor:
    def __init__(self, pids: Iterable[int], interval: float = 0.1, gpus: bool = True,
                 children: bool = True) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self.children = children
        self.interval = interval
        self.gpus = _gpus() if gpus else []
        self.samples: list[_Sample] = []
        self.own_cpu_s = 0.0  # the sampler thread's own CPU time so far
        self._known: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._whole: Window | None = None
        self.counters = _Counters()  # the windows' readings (the sampler thread's go through psutil)
        psutil.cpu_percent(percpu=True)  # primes the machine-wide per-core counter

    def processes(self) -> list[psutil.Process]:
        return _tree(self.roots, self.children)

    def energy_mj(self, gpu: _Gpu) -> int | None:
        if gpu.energy_start_mj is None:
            return None
        import pynvml

        try:
            return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        except Exception:
            return None

    def sample(self, procs: list[psutil.Process] | None = None, cpu: bool = False) -> int:
        """Take one reading now; returns its index in `samples`.

        Only the sampler thread reads CPU % (cpu=True): psutil measures it since the previous
        reading, and readings taken at a window's edges (edge_sample), milliseconds apart, would
        be noise.
        """
        total = 0.0
        rss = 0
        fresh = False
        with self._lock:
            procs = procs if procs is not None else self.processes()
            for proc in procs:
                try:
                    percent = proc.cpu_percent(None) if cpu else 0.0
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                if cpu and proc.pid not in self._known:  # a first reading means nothing
                    self._known.add(proc.pid)
                    fresh = True
                total += percent
            percore = psutil.cpu_percent(percpu=True) if cpu else None
            usable = cpu and not fresh
            self.samples.append(_Sample(total if usable else None, rss / 2**20,
                                        percore if usable else None,
                                        self._gpu_readings({proc.pid for proc in procs})))
            return len(self.samples) - 1

    def latest(self) -> int:
        """The index of the latest sample (-1 before any)."""
        with self._lock:
            return len(self.samples) - 1

    def edge_sample(self) -> tuple[int, float, float]:
        """A window's closing reading: one read of each process gives its RSS (a sample, without
        CPU %) and its CPU times. Returns the sample's index and the (user, system) seconds."""
        procs = self.processes()
        user, system, rss = self.counters.read(procs)
        gpus = self._gpu_readings({proc.pid for proc in procs})
        with self._lock:
            self.samples.append(_Sample(None, rss / 2**20, None, gpus))
            return len(self.samples) - 1, user, system

    def _gpu_readings(self, pids: set[int]) -> list[tuple[float, float, float, float | None] | None]:
        if not self.gpus:
            return []
        import pynvml

        readings: list[tuple[float, float, float, float | None] | None] = []
        for gpu in self.gpus:
            try:
                readings.append((float(pynvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu),
                                 pynvml.nvmlDeviceGetMemoryInfo(gpu.handle).used / 2**20,
                                 pynvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0,
                                 _process_memory_mb(pynvml, gpu.handle, pids)))
            except Exception:  # left out of the figures, not counted as an idle GPU
                readings.append(None)
        return readings

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            start = time.thread_time()
            self.sample(cpu=True)
            self.own_cpu_s += time.thread_time() - start

    def start(self) -> Monitor:
        """Start the sampler thread (interval > 0) and a window over the Monitor's life."""
        self.sample(cpu=True)  # primes every process's CPU counter; discarded
        self._whole = Window(self)
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="harness-monitor", daemon=True)
            self._thread.start()
        return self

    def window(self) -> Window:
        return Window(self)

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self._halt()
        self.counters.close()

    def stop(self) -> Summary:
        self._halt()
        assert self._whole is not None, "start() first"
        summary = self._whole.stop()
        self.counters.close()
        return summary

    def summary(self) -> Summary:
        return self.stop()

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
