"""Transcripts end to end: a router run of scripted models records each case's conversation, `harness
show` prints it, and report.html's item browser shows it, with the reason of an error, in a real
headless Chromium."""

from __future__ import annotations

import html as std_html
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import BENCHMARKS

from harness.commands.cli import main
from harness.report import html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def scripted(tmp: Path, name: str, steps: list[Any], style: str = "base") -> str:
    script = tmp / f"{name}.json"
    script.write_text(json.dumps(steps))
    return (f'[[models]]\nname = "{name}"\nbackend = "scripted"\nmodel = "script"\nprompt_style = "{style}"\n'
            f'options = {{ script = "{script}" }}\n')


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the router on one GSM8K item whose large model first writes a broken call."""
    tmp = tmp_path_factory.mktemp("transcripts")
    bad = {"tool_calls": [{"name": "ask_small_model", "arguments": "{task: half"}]}
    good = {"tool_calls": [{"name": "ask_small_model", "arguments": {"task": "What is half of 10?"}}]}
    registry = tmp / "scripted.toml"
    registry.write_text(scripted(tmp, "small", ["5"]) + scripted(tmp, "large", [bad, good, "The answer is 5."],
                                                                    "chat"))
    reports = tmp / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(BENCHMARKS / "test_gsm8k.py"), "-p", "no:cacheprovider",
         "--report-dir", str(reports), "--models-file", str(registry), "--models", "small",
         "--small-model", "small", "--large-model", "large", "--samples", "1", "-k", "delegate",
         "--run-id", "convo", "-q"], capture_output=True, text=True, cwd=tmp, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return reports / "convo"


def test_the_record_keeps_the_conversation(routed: Path) -> None:
    [record] = [json.loads(line) for line in (routed / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "error" and record["error"].startswith("tool call failed")
    messages = record["transcript"]["messages"]
    assert [(m["role"], m["model"]) for m in messages] == [
        ("system", "large"), ("user", "large"), ("assistant", "large"), ("tool", "large"), ("assistant", "large"),
        ("prompt", "small"), ("assistant", "small"), ("tool", "large"), ("assistant", "large")]
    assert messages[2]["tool_calls"][0]["arguments"] == "{task: half"
    assert messages[3]["ok"] is False and messages[3]["content"].startswith("error: arguments are not valid JSON")
    assert "What is half of 10?" in messages[5]["content"]  # the small model's few-shot prompt
    assert messages[7]["content"] == "5" and record["transcript"]["final"] == "The answer is 5."


def test_harness_show_prints_the_case(routed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(routed), "delegate"]) == 0
    out = capsys.readouterr().out
    assert "status   error" in out and "reason   tool call failed: error: arguments are not valid JSON" in out
    assert ">> calls ask_small_model({task: half)" in out
    assert '>> calls ask_small_model({"task": "What is half of 10?"})' in out
    assert "--- small answered\n  5" in out and "final answer: 'The answer is 5.'" in out
    assert main(["show", str(routed), "no-such-case"]) == 2
    assert "0 cases of run" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_item_browser_shows_the_conversation(routed: Path) -> None:
    page = routed / html.REPORT_FILE
    assert page.is_file()
    dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={routed / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = dom.stdout.split('id="items"', 1)[1]  # what the script built, not the embedded data
    body = body.split('<script type="application/json"', 1)[0]
    assert 'class="reason"' in body and "reason: tool call failed" in body
    assert "conversation: 9 messages, 2 tool calls" in body
    assert "calls ask_small_model({task: half)" in body
    assert 'calls ask_small_model({"task": "What is half of 10?"})' in std_html.unescape(body)
    assert "tool ask_small_model failed -&gt; large" in body and "small answered" in body
    console = [line for line in dom.stderr.splitlines() if "Uncaught" in line]
    assert console == [], console

