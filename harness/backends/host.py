"""A model host: one process that loads one model and serves the backend protocol over a socket.

Started by HostedBackend (hosted.py) as `python -m harness.backends.host SOCKET SPEC_JSON`, with
the socket's key in HARNESS_HOST_KEY. It listens on a Unix socket first, then loads the model, so
a client's connection waits for the load and sees a crash during it. Each connection gets a thread
of its own and every call runs under one lock (a model is not thread-safe), so one host can serve
several clients, such as every pytest-xdist worker of a machine; today each RunSession starts its
own. Messages are (operation, arguments) -> ("ok", value) or ("error", exception).

A native crash (a segfault in llama.cpp, an abort, an OOM kill) ends this process; faulthandler
writes the Python stack to stderr first, which the client keeps the tail of. Core dumps are off:
a model's core is hundreds of MB and nobody reads it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, Listener
from typing import Any

from harness.backends.base import BackendError
from harness.registry import ModelSpec, create_backend

KEY_VARIABLE = "HARNESS_HOST_KEY"
# The protocol's calls a client may make; `hello` answers what the host offers.
OPERATIONS = ("generate", "loglikelihood", "loglikelihood_groups", "chat_text", "count_tokens", "describe")


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
    def __init__(self, spec: ModelSpec, timeout_s: float | None) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self.lock = threading.Lock()  # one call at a time: a model is not thread-safe
        self.clients_lock = threading.Lock()
        self.loaded = threading.Event()
        self.backend: Any = None
        self.load_error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self.clients = 0

    def load(self) -> None:
        start = time.perf_counter()
        try:
            self.backend = create_backend(self.spec, timeout_s=self.timeout_s)
        except BaseException as exc:  # noqa: BLE001 - the client is told why the model did not load
            self.load_error = exc
        else:
            self.info = {"pid": os.getpid(), "load_s": time.perf_counter() - start, "rss_after_load_mb": _rss_mb(),
                         "abilities": sorted(self.backend.abilities),
                         "supports_loglikelihood": bool(self.backend.supports_loglikelihood),
                         "token_count_source": self.backend.token_count_source}
        self.loaded.set()

    def answer(self, operation: str, args: tuple[Any, ...]) -> Any:
        self.loaded.wait()
        if self.load_error is not None:
            raise BackendError(f"{self.spec.name}: the model did not load: "
                               f"{type(self.load_error).__name__}: {self.load_error}")
        if operation == "hello":
            return self.info
        if operation not in OPERATIONS:
            raise BackendError(f"model host: unknown operation {operation!r}")
        with self.lock:
            return getattr(self.backend, operation)(*args)

    def serve(self, conn: Connection) -> None:
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
                reply: tuple[str, Any] = ("ok", self.answer(operation, args))
            except BaseException as exc:  # noqa: BLE001 - every failure travels back as the call's error
                reply = ("error", exc if isinstance(exc, BackendError) else
                         BackendError(f"{self.spec.name}: {type(exc).__name__}: {exc}"))
            try:
                conn.send(reply)
            except Exception as exc:  # noqa: BLE001 - a value that does not pickle is the call's error
                conn.send(("error", BackendError(f"{self.spec.name}: the host could not send its answer: {exc}")))
        conn.close()
        with self.clients_lock:
            self.clients -= 1
            last = self.clients == 0
        if last:  # the last client went away: nobody will ask this host again
            self.close()
            os._exit(0)

    def close(self) -> None:
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception:  # noqa: BLE001 - the process ends anyway
                pass


def _watch_parent(parent: int) -> None:
    """End the host when the process that started it is gone (killed without closing us)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    socket_path, spec_json = args[0], args[1]
    timeout_s = float(args[2]) if len(args) > 2 and args[2] else None
    faulthandler.enable()  # the Python stack of a native crash goes to stderr, for the crash record
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the client decides
    key = bytes.fromhex(os.environ.pop(KEY_VARIABLE))
    listener = Listener(socket_path, family="AF_UNIX", authkey=key)
    host = Host(spec_from_json(spec_json), timeout_s)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    threading.Thread(target=host.load, daemon=True).start()
    while True:
        conn = listener.accept()
        with host.clients_lock:
            host.clients += 1
        threading.Thread(target=host.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
