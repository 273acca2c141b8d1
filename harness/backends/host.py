"""A model host: one process that loads one model and serves the backend protocol over a socket.

Started by HostedBackend (hosted.py) as `python -m harness.backends.host SOCKET SPEC_JSON TIMEOUT
LOCK`, with the socket's key in HARNESS_HOST_KEY. It listens on a Unix socket first, then loads the
model, so a client's connection waits for the load and sees a crash during it. Each connection gets
a thread of its own and every call runs under one lock (a model is not thread-safe), so one host
serves several clients: every pytest-xdist worker of a run on this machine (host_place.py).
Concurrent greedy generation joins a running batch (the backend's generate_concurrently), and
concurrent scoring calls are packed into one (host_packing.py: on an accelerator by default).
Messages are (operation, arguments) -> ("ok", value) or ("error", exception); a streamed
generation (generate_stream) sends ("part", text) for each piece of the answer before its reply.

The host ends when its last client goes away (or when none came for IDLE_S): it takes the LOCK
first, the one clients hold while they find or start a host, so nobody connects to a host on its
way out. The process started is a supervisor: it forks the host and writes the host's exit status
(exit.json beside the socket), so every client, not only the one that started it, can tell a
SIGKILL from a segfault.

A native crash (a segfault in llama.cpp, an abort, an OOM kill) ends the host; faulthandler
writes the Python stack to stderr first, which the client keeps the tail of. Core dumps are off:
a model's core is hundreds of MB and nobody reads it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError, Generation, cpu_since, cpu_times
from harness.backends.engine_rate import engine_rate
from harness.backends.host_packing import (
    PACKED,
    ScoringPacker,
    apportion_cpu,
    packs_by_default,
)
from harness.backends.host_place import locked, write_exit_status
from harness.models.registry import ModelSpec, create_backend

KEY_VARIABLE = "HARNESS_HOST_KEY"
# The protocol's calls a client may make; `hello` answers what the host offers.
OPERATIONS = ("generate", "loglikelihood", "loglikelihood_groups", "chat_text", "count_tokens", "describe",
              "generate_stream", "chat_sampling", "engine_rate")
# A host nobody connected to (its starter died first) ends after this long.
IDLE_S = 60.0


def spec_to_json(spec: ModelSpec) -> str:
    return json.dumps({"name": spec.name, "backend": spec.backend, "model": spec.model, "tiers": list(spec.tiers),
                       "prompt_style": spec.prompt_style, "quantization": spec.quantization,
                       "price_in": spec.price_in, "price_out": spec.price_out, "default": spec.default,
                       "options": spec.options})


def spec_from_json(text: str) -> ModelSpec:
    data = json.loads(text)
    # host=False: the model itself runs here, in this process.
    return ModelSpec(**{**data, "tiers": tuple(data["tiers"]), "host": False})


def _rss_mb() -> float | None:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except Exception:  # noqa: BLE001 - an informative figure, never worth failing the host
        return None


class Host:
    def __init__(self, spec: ModelSpec, timeout_s: float | None, socket_path: str = "",
                 lock_path: str = "") -> None:
        self.spec = spec
        self.socket_path = socket_path
        self.lock_path = lock_path
        self.last_seen = time.monotonic()
        self.timeout_s = timeout_s
        self.lock = threading.Lock()  # one call at a time: a model is not thread-safe
        self.clients_lock = threading.Lock()
        self.loaded = threading.Event()
        self.backend: Any = None
        self.load_error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self.clients = 0
        self.running_fd: int | None = None
        self.running_width = 12
        self.packer: ScoringPacker | None = None

    def load(self) -> None:
        start = time.perf_counter()
        options = dict(self.spec.options)
        options.pop("pack_scoring", None)  # the host's option, not the backend's
        try:
            self.backend = create_backend(replace(self.spec, options=options), timeout_s=self.timeout_s)
        except BaseException as exc:  # noqa: BLE001 - the client is told why the model did not load
            self.load_error = exc
        else:
            self.info = {"pid": os.getpid(), "supervisor": os.getppid(), "load_s": time.perf_counter() - start,
                         "rss_after_load_mb": _rss_mb(),
                         "abilities": sorted(self.backend.abilities),
                         "supports_loglikelihood": bool(self.backend.supports_loglikelihood),
                         "token_count_source": self.backend.token_count_source}
            if "loglikelihood_groups" in self.backend.abilities and \
                    packs_by_default(self.spec.options, self.backend.describe()):
                self.packer = ScoringPacker(self.backend, self.lock, self.mark_running)
        self.loaded.set()

    def answer(self, operation: str, args: tuple[Any, ...], client: int = 0,
               send_part: Callable[[str], None] | None = None) -> Any:
        self.loaded.wait()
        if self.load_error is not None:
            raise BackendError(f"{self.spec.name}: the model did not load: "
                               f"{type(self.load_error).__name__}: {self.load_error}")
        if operation == "hello":
            return {**self.info, "client": client}
        if operation not in OPERATIONS:
            raise BackendError(f"model host: unknown operation {operation!r}")
        if operation == "engine_rate":  # once per host: every client asks after it starts or finds it
            with self.lock:
                if "engine_rate" not in self.info:
                    self.mark_running([client])
                    self.info["engine_rate"] = engine_rate(self.backend, self.spec.model, self.lock)
                return self.info["engine_rate"]
        if operation == "generate":  # joins the running batch, where the backend batches this request
            generated = self.backend.generate_concurrently(args[0], self.lock)
            if generated is not None:
                return generated
        if operation in PACKED and self.packer is not None:  # packed with the scoring calls waiting beside it
            return self.packer.score(operation, args, client)
        with self.lock:
            self.mark_running([client])
            before = cpu_times()
            if operation == "generate_stream":  # each piece goes to the client as it comes
                value = self.backend.generate_stream(args[0], send_part or (lambda text: None))
            else:
                value = getattr(self.backend, operation)(*args)
            if isinstance(value, Generation):  # alone on the model: the host's CPU time is all this call's
                user, system = cpu_since(before)
                value.timings.server.setdefault("host_cpu_s", user + system)
                value.timings.server.setdefault("host_cpu_user_s", user)
                value.timings.server.setdefault("host_cpu_system_s", system)
            elif operation in PACKED:  # scoring, unpacked: its groups' shares, by tokens
                apportion_cpu([value] if operation == "loglikelihood" else list(value), cpu_since(before))
            if operation == "describe" and self.packer is not None:
                value = {**value, "scoring_packs": self.packer.stats.to_dict()}
            return value

    def mark_running(self, clients: list[int]) -> None:
        """Say whose call the model is computing (a file beside the socket; several clients where
        their calls are packed into one): if the host dies now, those calls crashed it, and the
        calls queued behind it can be asked again of the next host."""
        if self.running_fd is None and self.socket_path:
            self.running_fd = os.open(Path(self.socket_path).parent / "running", os.O_WRONLY | os.O_CREAT, 0o600)
        if self.running_fd is not None:
            # One write over the whole of the last one (padded), so a reader never sees half of it.
            text = " ".join(str(c) for c in clients).ljust(self.running_width)
            self.running_width = len(text)
            os.pwrite(self.running_fd, text.encode(), 0)

    def serve(self, conn: Connection, client: int = 0) -> None:
        while True:
            try:
                operation, args = conn.recv()
            except (EOFError, OSError):
                break
            if operation == "shutdown":
                conn.send(("ok", None))
                self.close()
                os._exit(0)
            try:
                # A client gone while its answer streams makes send() raise: the generation stops.
                reply: tuple[str, Any] = ("ok", self.answer(operation, args, client,
                                                            lambda text: conn.send(("part", text))))
            except BaseException as exc:  # noqa: BLE001 - every failure travels back as the call's error
                reply = ("error", exc if isinstance(exc, BackendError) else
                         BackendError(f"{self.spec.name}: {type(exc).__name__}: {exc}"))
            try:
                conn.send(reply)
            except (EOFError, OSError):  # the client left while its call ran (killed, or past its timeout)
                break
            except Exception as exc:  # noqa: BLE001 - a value that does not pickle is the call's error
                try:
                    conn.send(("error", BackendError(f"{self.spec.name}: the host could not send its answer: {exc}")))
                except (EOFError, OSError):
                    break
        conn.close()
        with self.clients_lock:
            self.clients -= 1
            self.last_seen = time.monotonic()
            last = self.clients == 0
        if last:  # the last client went away: end, unless another came meanwhile
            self.end_if_unused()

    def end_if_unused(self) -> None:
        """End the host if it has no client, under the clients' lock: a client that holds it is
        about to connect (or has), and one that comes after finds no socket and starts a host."""
        with locked(Path(self.lock_path)) if self.lock_path else contextlib.nullcontext():
            with self.clients_lock:
                if self.clients > 0:
                    return
                if self.socket_path:
                    Path(self.socket_path).unlink(missing_ok=True)
            self.close()
            os._exit(0)

    def watch_idle(self) -> None:
        while True:
            time.sleep(1.0)
            with self.clients_lock:
                idle = self.clients == 0 and time.monotonic() - self.last_seen > IDLE_S
            if idle:
                self.end_if_unused()

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # noqa: BLE001 - the process ends anyway
                pass


def _supervise(host_pid: int, generation: Path) -> None:
    """Wait for the host and write how it ended, for whichever client sees it go."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(host_pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:
        write_exit_status(generation, code)
    except OSError:  # the folder went with a private host's client: nobody is asking
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    socket_path, spec_json = args[0], args[1]
    timeout_s = float(args[2]) if len(args) > 2 and args[2] else None
    lock_path = args[3] if len(args) > 3 else ""
    child = os.fork()  # before any thread: the parent only waits, the child is the host
    if child:
        _supervise(child, Path(socket_path).parent)
    faulthandler.enable()  # the Python stack of a native crash goes to stderr, for the crash record
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the client decides
    key = bytes.fromhex(os.environ.pop(KEY_VARIABLE))
    listener = Listener(socket_path, family="AF_UNIX", authkey=key)
    host = Host(spec_from_json(spec_json), timeout_s, socket_path, lock_path)
    threading.Thread(target=host.watch_idle, daemon=True).start()
    accepted = 0  # each connection's number: `running` names the one being computed
    threading.Thread(target=host.load, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, AuthenticationError):  # a caller without the key, or one that left
            continue
        with host.clients_lock:
            host.clients += 1
            accepted += 1
        threading.Thread(target=host.serve, args=(conn, accepted), daemon=True).start()


if __name__ == "__main__":
    main()
