"""A model in a process of its own: the backend protocol, proxied to a model host (host.py).

In-process libraries (llama.cpp, transformers) run their model in a host process per model, the
way servers do by nature. So each model's CPU time, memory and load time are its own (the monitor
samples the host's PID), and a native crash costs the case in flight, not the run:

- a host that dies during a call (a signal, an OOM kill, an abort) raises HostCrash, with the
  signal and the last lines of its stderr; the case is recorded with status=crash;
- the next call starts a new host; after MAX_CRASH_STREAK crashes in a row the model is retired
  (`retired` says why) and the run skips its remaining cases.

llama.cpp's AMX extra buffer type crashes on the first decode on some Xeons (upstream llama.cpp
issue #20824). A llama.cpp host that does not say `use_extra_bufts` in its options is probed: a
short prompt is decoded on start, and if the host dies doing it, it restarts with extra buffer
types off (`describe()["extra_bufts"]` says which, and why). Where they work, they stay on.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from harness.backends.base import (
    OPTIONAL_ABILITIES,
    BackendBase,
    BackendError,
    BackendTimeout,
    Generation,
    HostCrash,
    LoglikelihoodRequest,
    Loglikelihoods,
    Request,
    TextSink,
    Unsupported,
    UsageSource,
)
from harness.backends.engine_rate import not_measured
from harness.backends.host import KEY_VARIABLE, spec_to_json
from harness.backends.host_place import HostPlace, shared_folder
from harness.backends.host_verdicts import known_verdict, remember_verdict
from harness.core.processes import alive
from harness.models.registry import ModelSpec

MAX_CRASH_STREAK = 3
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 4000
# The probe: a prompt long enough to run a batched matrix product, and a token decoded after it.
PROBE = Request(prompt="Question: What is the capital of France, the country in western Europe? "
                       "Answer with one word.\nAnswer:", max_tokens=2)
def _signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _tail(path: Path) -> str:
    """The end of a host's stderr: from faulthandler's report of a fatal error where there is one
    (its header names the signal; the stacks follow), else the last lines."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").rstrip()
    except OSError:
        return ""
    fatal = text.rfind("Fatal Python error")
    if fatal >= 0:
        return text[fatal:fatal + STDERR_TAIL_CHARS]
    return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


class HostedBackend(BackendBase):
    """The backend protocol, proxied to a model host. With `shared_by` (the run id), every client
    of that run and model on this machine uses one host (host_place.py): the first to take the
    folder's lock starts it, the others connect to it, and it ends when the last one leaves."""

    def __init__(self, spec: ModelSpec, *, timeout_s: float | None = None, shared_by: str | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self._timeout_s = timeout_s
        self._shared_by = shared_by
        self._lock = threading.Lock()  # one call in flight per client, as with an in-process model
        self._place: HostPlace | None = None
        self._generation: Path | None = None  # the generation folder of the host we talk to
        self._proc: subprocess.Popen[bytes] | None = None  # its supervisor, where we started it
        self._conn: Connection | None = None
        self._info: dict[str, Any] = {}
        self._options: dict[str, Any] = {}  # what the probe decided, applied to every restart
        self._choice: dict[str, Any] = {}
        self._described: dict[str, Any] | None = None
        self._engine_rate: dict[str, Any] | None = None  # the engine's own speed (engine_rate.py)
        self.crashes = 0
        self.streak = 0  # crashes in a row
        self.starts = 0
        self.retired: str | None = None
        if spec.backend == "llamacpp" and "use_extra_bufts" in spec.options:
            on = bool(spec.options["use_extra_bufts"])
            self._choice = {"extra_bufts": "on" if on else "off", "extra_bufts_why": "set in the registry"}
        with self._lock:
            self._ensure()

    # -- the protocol --------------------------------------------------------------------------
    @property
    def abilities(self) -> frozenset[str]:
        return frozenset(self._info.get("abilities", ()))

    process_children = False  # the host runs its model in threads; it starts no process

    @property
    def inline_calls(self) -> bool:  # type: ignore[override]
        """A call past the run's --call-timeout ends the host here (_exchange), as the wrapper
        would abandon it: the wrapper need not run it on a thread of its own."""
        return self._timeout_s is not None

    @property
    def supports_loglikelihood(self) -> bool:  # type: ignore[override]
        return bool(self._info.get("supports_loglikelihood", False))

    @property
    def token_count_source(self) -> UsageSource:  # type: ignore[override]
        return self._info.get("token_count_source", "tokenizer")

    def generate(self, request: Request) -> Generation:
        return self._call("generate", request)

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> Loglikelihoods:
        return self._call("loglikelihood", requests)

    def loglikelihood_groups(self, groups: list[list[LoglikelihoodRequest]]) -> list[Loglikelihoods]:
        return self._call("loglikelihood_groups", groups)

    def chat_text(self, messages: tuple[dict[str, Any], ...]) -> str:
        return self._call("chat_text", messages)

    def count_tokens(self, content: str | list[dict[str, Any]]) -> int:
        return self._call("count_tokens", content)

    def generate_stream(self, request: Request, on_text: TextSink) -> Generation:
        """The host sends each piece of the answer on our connection before the answer itself."""
        return self._call("generate_stream", request, _on_part=on_text)

    def chat_sampling(self) -> dict[str, float]:
        return self._call("chat_sampling")

    def describe(self) -> dict[str, Any]:
        """The hosted backend's own description, with the host's: load time, RSS after load,
        restarts and crashes, its packed scoring calls, and for llama.cpp what the probe chose for
        extra buffer types."""
        running = self._proc is not None and self._proc.poll() is None
        if self._described is None and self.retired is None or running:
            try:  # a host that is not running is not started only to be described
                self._described = dict(self._call("describe", _ability=None))
            except BackendError as exc:
                self._described = {"describe_error": str(exc)}
        data = dict(self._described or {})
        host = {"pid": self._info.get("pid"), "load_s": self._info.get("load_s"),
                "rss_after_load_mb": self._info.get("rss_after_load_mb"), "starts": self.starts,
                "crashes": self.crashes, "retired": self.retired, "shared": self._shared_by is not None}
        if self._engine_rate is not None:  # the rates beside the settings; whether read or measured, per host
            rate = dict(self._engine_rate)
            host["engine_rate_cached"] = rate.pop("cached", None)
            data["engine_rate"] = rate
        if "scoring_packs" in data:  # the host's counts so far: its own, not how the model runs
            host["scoring_packs"] = data.pop("scoring_packs")
        return {**data, **self._choice, "host": host}

    def process(self) -> int | None:
        if self._conn is not None and _pid_alive(self._info.get("pid")):
            return int(self._info["pid"])
        if self.retired is not None or not self._lock.acquire(blocking=False):
            return None  # a call still holds the host (one abandoned past its timeout): not sampled
        try:
            self._ensure(strict=False)  # the host that crashed in the last case starts again for this one
            return int(self._info["pid"]) if self._conn is not None else None
        except BackendError:
            return None
        finally:
            self._lock.release()

    def close(self) -> None:
        """Leave the host: a private one is asked to end (killed if it does not); a shared one
        ends when its last client leaves. Never waits on a call in flight."""
        if self._lock.acquire(timeout=0.5):
            try:
                self._stop_host(polite=True)
            finally:
                self._lock.release()
        else:  # a call abandoned past its timeout still holds the host: end it (a private one)
            self._stop_host(polite=False)

    def _stop_host(self, *, polite: bool) -> None:
        proc, conn, pid = self._proc, self._conn, self._info.get("pid")
        self._proc = self._conn = None
        if self._shared_by is None and _pid_alive(pid):
            if conn is not None and polite:
                try:
                    conn.send(("shutdown", ()))
                    conn.recv()
                except (EOFError, OSError):
                    pass
            else:
                _kill(pid)
        if conn is not None:
            conn.close()
        if proc is not None:
            if self._shared_by is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _kill(pid)
                    proc.kill()
                    proc.wait()
            else:  # the supervisor ends with the host, whenever the other clients leave it
                threading.Thread(target=proc.wait, daemon=True).start()
        if self._place is not None and self._place.private:
            self._place.remove()
            self._place = None
        self._generation = None

    # -- the host's life -----------------------------------------------------------------------
    def _call(self, operation: str, *args: Any, _ability: str | None = "", _on_part: TextSink | None = None) -> Any:
        ability = operation if _ability == "" else _ability
        if ability in OPTIONAL_ABILITIES and ability not in self.abilities:
            raise Unsupported(f"{self.name}: this backend does not offer {ability}")
        with self._lock:
            if self.retired is not None:
                raise BackendError(self.retired)
            self._ensure(strict=True)
            try:
                value = self._exchange(operation, args, _on_part)
            except _Queued:  # the shared host died computing another client's call, not ours
                self._ensure(strict=True)
                value = self._exchange(operation, args, _on_part)
            self.streak = 0
            return value

    def _exchange(self, operation: str, args: tuple[Any, ...], on_part: TextSink | None = None) -> Any:
        assert self._conn is not None
        try:
            self._conn.send((operation, args))
            # A call past the run's --call-timeout ends its host, as an HTTP backend's request is
            # dropped: the next case gets a fresh host instead of queueing behind a hung one. The
            # limit is the whole call's, however many pieces a streamed answer comes in.
            limit = None if operation == "hello" else self._timeout_s
            deadline = None if limit is None else time.monotonic() + limit
            sink_failed: Exception | None = None
            while True:
                if deadline is not None and not self._conn.poll(max(0.0, deadline - time.monotonic())):
                    self._stop_host(polite=False)
                    raise BackendTimeout(f"{self.name}: no answer within {limit:g} s; its host was stopped")
                kind, value = self._conn.recv()
                if kind != "part":
                    break
                if on_part is not None and sink_failed is None:
                    try:
                        on_part(value)
                    except Exception as exc:  # noqa: BLE001 - raised once the host has answered
                        sink_failed = exc  # the rest of the answer is read, so the channel stays in step
        except (EOFError, OSError):
            if self._shared_by is not None and operation != "hello" and not self._was_running():
                self._forget_host()
                raise _Queued() from None
            raise self._crashed(operation) from None
        if kind == "error":
            raise value
        if sink_failed is not None:
            raise sink_failed
        return value

    def _supervisor(self) -> int | None:
        """The process that reports how the host ended: ours where we started the host."""
        if self._proc is not None:
            return self._proc.pid
        supervisor = self._info.get("supervisor")
        return supervisor if isinstance(supervisor, int) else None

    def _was_running(self) -> bool:
        """Whether the host that just died was computing our call (it names the one it computes)
        rather than holding it in its queue. Unknown counts as ours: a crash is never hidden."""
        generation = self._generation
        if generation is None:
            return True
        HostPlace.exit_status(generation, self._supervisor())  # gone for sure once its supervisor says so
        try:  # the clients whose call it computed: several where their scoring calls were packed
            running = {int(c) for c in (generation / "running").read_text().split()}
        except (OSError, ValueError):
            return True
        return not running or self._info.get("client") in running

    def _alive(self) -> bool:
        """The host answers: its process lives and our channel has nothing pending (a host never
        speaks unasked, so a readable channel is one it closed)."""
        if self._conn is None or not _pid_alive(self._info.get("pid")):
            return False
        try:
            return not self._conn.poll(0)
        except (EOFError, OSError):
            return False

    def _ensure(self, *, strict: bool = True) -> None:
        """A running host, found, started (and for llama.cpp, probed) if there is none. A private
        host found dead is a crash of the call about to be made (`strict`), or, at a case's start,
        just restarted. A shared host found dead between our calls died in another client's
        call, which recorded the crash: we start or find the next one."""
        if self._alive():
            return
        if self._conn is not None or self._proc is not None:
            if self._shared_by is None:
                crash = self._crashed("the time between calls")
                if strict:
                    raise crash
            else:
                self._forget_host()
        if self.retired is not None:
            raise BackendError(self.retired)
        if self._place is None:
            self._place = (HostPlace(shared_folder(self._shared_by, spec_to_json(self.spec)), private=False)
                           if self._shared_by is not None else HostPlace.new_private())
        with self._place.lock():
            if self._shared_by is not None:
                chosen = self._place.read_choice()
                self._options.update(chosen.get("options") or {})
                self._choice.update(chosen.get("choice") or {})
                if self._connect_existing():
                    self._ask_engine_rate()
                    return
            self._start_and_probe()
            self._ask_engine_rate()
            if self._shared_by is not None:
                self._place.write_choice(self._options, self._choice)

    def _ask_engine_rate(self) -> None:
        """The engine's own rates, asked once per client after the probe, before any case (so
        the measurement is the load's time, not a case's): measured by the host, or read from
        the cache folder where this engine was measured before on this machine."""
        if self._engine_rate is not None:
            return
        known = self._info.get("engine_rate")  # a shared host measured it for an earlier client
        if isinstance(known, dict):
            self._engine_rate = dict(known)
            return
        try:
            self._engine_rate = dict(self._exchange("engine_rate", ()))
        except HostCrash:
            raise
        except BackendError as exc:  # an older host, say: no rate rather than no model
            self._engine_rate = not_measured(f"{self.name}: {exc}")

    def _start_and_probe(self) -> None:
        probe = self._needs_probe()
        known = known_verdict(self.spec) if probe else None
        if known is not None:  # this process probed this model file before: its verdict holds
            if known["extra_bufts"] != "on":
                self._options["use_extra_bufts"] = False
            self._choice = {"extra_bufts": known["extra_bufts"], "extra_bufts_why": known["why"]}
            probe = False
        self._start()
        if probe:
            self._probe()

    def _connect_existing(self) -> bool:
        """Connect to the shared host now serving, if there is one (call under the lock)."""
        assert self._place is not None
        number = self._place.current()
        if number is None:
            return False
        generation = self._place.generation(number)
        key = HostPlace.key(generation)
        if key is None or not (generation / "host.sock").exists():
            return False
        try:
            self._conn = Client(str(generation / "host.sock"), family="AF_UNIX", authkey=key)
        except (EOFError, OSError):  # a socket left by a host that died: start the next one
            return False
        self._generation = generation
        self._info = self._exchange("hello", ())
        return True

    def _start(self) -> None:
        assert self._place is not None
        key = secrets.token_bytes(32)
        _, generation = self._place.new_generation(key)
        self._generation = generation
        socket_path = generation / "host.sock"
        spec = self.spec
        if self._options:
            spec = replace(spec, options={**spec.options, **self._options})
        env = {**os.environ, KEY_VARIABLE: key.hex()}
        if self._shared_by is not None:  # one host for every worker: all the cores are its own
            env.pop("PYTEST_XDIST_WORKER_COUNT", None)
        package_root = str(Path(__file__).resolve().parents[2])  # this harness, whatever the path says
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        with open(generation / "stderr.log", "wb") as stderr:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.backends.host", str(socket_path), spec_to_json(spec),
                 "" if self._timeout_s is None else repr(self._timeout_s), str(self._place.lock_path)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env, start_new_session=False)
        self.starts += 1
        deadline = time.monotonic() + 120.0
        # The host listens before it loads: this takes an import's time. The socket's file appears
        # at bind(), a moment before listen(): a refused connection in between is tried again.
        while True:
            if self._proc.poll() is not None:
                raise self._crashed("start")
            if time.monotonic() > deadline:
                self._proc.kill()
                raise self._crashed("start")
            if socket_path.exists():
                try:
                    self._conn = Client(str(socket_path), family="AF_UNIX", authkey=key)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
                except (EOFError, OSError):
                    raise self._crashed("start") from None
            time.sleep(0.01)
        try:
            self._info = self._exchange("hello", ())
        except HostCrash:
            raise
        except BackendError:  # the model did not load: an error, not a crash; nothing to keep running
            self._stop_host(polite=True)
            raise

    def _needs_probe(self) -> bool:
        probed = self.spec.backend == "llamacpp" or self.spec.options.get("amx_crash") is True  # (a test double)
        return probed and "use_extra_bufts" not in {**self.spec.options, **self._options}

    def _probe_call(self) -> tuple[str, tuple[Any, ...]]:
        """The probe's decode: scoring a continuation where the backend can (a forward pass over the
        prompt, as generation's first step, without making the host's generation batch context,
        which a model that only scores never needs), else generating two tokens."""
        if "loglikelihood" in self.abilities:
            return "loglikelihood", ([LoglikelihoodRequest(str(PROBE.prompt), " Paris")],)
        return "generate", (PROBE,)

    def _probe(self) -> None:
        try:
            self._exchange(*self._probe_call())
        except HostCrash as crash:
            why = (f"a probe decode with them crashed the host ({crash.signal or crash.exit_code}); "
                   "llama.cpp's AMX path on this CPU (upstream issue #20824)")
            self.crashes -= 1  # the probe's crash is a finding, not a case's crash
            self.streak = 0
            self._options["use_extra_bufts"] = False
            self._start()
            self._exchange(*self._probe_call())  # off must work, or this model cannot run here
            verdict = {"extra_bufts": "off", "why": why}
        else:
            verdict = {"extra_bufts": "on", "why": "a probe decode with them worked"}
        remember_verdict(self.spec, verdict)
        self._choice = {"extra_bufts": verdict["extra_bufts"], "extra_bufts_why": verdict["why"]}

    def _forget_host(self) -> None:
        """Drop a shared host that ended while we did not call it."""
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            threading.Thread(target=self._proc.wait, daemon=True).start()
        self._conn = self._proc = None
        self._generation = None

    def _crashed(self, operation: str) -> HostCrash:
        """The host is gone: what killed it (its supervisor says), the tail of its stderr; start
        afresh next time."""
        proc, generation, pid = self._proc, self._generation, self._info.get("pid")
        returncode = HostPlace.exit_status(generation, self._supervisor()) if generation is not None else None
        if returncode is None and self._shared_by is None and _pid_alive(pid):
            _kill(pid)  # the channel broke but the process lives: end it
            returncode = HostPlace.exit_status(generation, self._supervisor()) if generation else None
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                threading.Thread(target=proc.wait, daemon=True).start()
            if returncode is None:  # no word from a supervisor: it died itself (before forking)
                returncode = proc.returncode
        tail = _tail(generation / "stderr.log") if generation is not None else ""
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._generation = None
        self.crashes += 1
        self.streak += 1
        name = _signal_name(returncode)
        how = f"killed by {name}" if name else f"exited with code {returncode}"
        message = f"{self.name}: the model host {how} during {operation}"
        if self.streak >= MAX_CRASH_STREAK:
            self.retired = (f"{self.name}: the model host crashed {self.streak} times in a row "
                            f"(last: {how}); its remaining cases are skipped")
        lines = tail.strip().splitlines()
        last_line = (lines[0] if tail.startswith("Fatal Python error") else lines[-1]) if lines else ""
        if last_line:
            message += f": {last_line}"
        return HostCrash(message, model=self.name, signal=name,
                         exit_code=returncode if name is None else None, stderr_tail=tail)


class _Queued(Exception):
    """Our call waited in a shared host that died computing another's: ask the next host."""


def _pid_alive(pid: Any) -> bool:
    return isinstance(pid, int) and alive(pid)


def _kill(pid: Any) -> None:
    if isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
