"""Models in host processes of their own (backends/hosted.py): crashes cost one case, not the run.

The scripted test double runs in a host (`host = true`) and crashes on demand: a NULL read through
ctypes (SIGSEGV, as a native library would), or a SIGKILL from outside during a call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import BenchRun, requires_llamacpp

from harness.backends.base import BackendError, HostCrash, Request, Unsupported
from harness.backends.hosted import HostedBackend
from harness.backends.scripted import ScriptedBackend
from harness.models.registry import ModelSpec, create_backend

BENCH = '''
import os
import signal
import threading

from harness.backends.base import Request
from harness.run.plugin import parametrize_cases
from harness.suites.base import Item, Score

PROMPTS = {prompts!r}
ITEMS = [Item(id=f"q{{i}}", input={{"prompt": p}}, reference="yes") for i, p in enumerate(PROMPTS)]


def pytest_generate_tests(metafunc):
    parametrize_cases(metafunc, "toy", ITEMS)


def test_toy(case, llm, record):
    prompt = case.item.input["prompt"]
    if prompt == "KILL" and os.path.exists("kill-once"):  # the host is killed from outside while it answers
        os.remove("kill-once")
        threading.Timer(0.3, os.kill, (llm.backend.process(), signal.SIGKILL)).start()
    text = llm.generate(Request(prompt=prompt, max_tokens=4)).text
    record(text, Score(text == "yes"))
'''


def _registry(path: Path, **options: Any) -> Path:
    registry = path / "hosted.toml"
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in {"steps": ["yes"], **options}.items())
    registry.write_text('[[models]]\nname = "scripted"\nbackend = "scripted"\nmodel = "script"\nhost = true\n'
                        f"options = {{ {table} }}\n")
    return registry


def _run(pytester: pytest.Pytester, prompts: list[str], *args: str, **options: Any) -> pytest.RunResult:
    pytester.makepyfile(test_toy=BENCH.format(prompts=prompts))
    registry = _registry(pytester.path, **options)
    return pytester.runpytest_subprocess("test_toy.py", "--models-file", str(registry), "--models", "scripted",
                                         "--report-dir", str(pytester.path / "reports"), "-p", "no:cacheprovider",
                                         "-rs", *args)


def _records(pytester: pytest.Pytester, run_id: str) -> list[dict[str, Any]]:
    lines = (pytester.path / "reports" / run_id / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _summary(pytester: pytest.Pytester, run_id: str) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / run_id / "summary.json").read_text())  # type: ignore[no-any-return]


def test_a_host_killed_during_a_case_crashes_that_case_only(pytester: pytest.Pytester) -> None:
    (pytester.path / "kill-once").touch()
    result = _run(pytester, ["fine", "KILL", "after"], "--run-id", "k", sleep_s=1.0)
    assert result.ret == 1  # the crashed case fails its test; the run goes on and reports
    records = {r["item_id"]: r for r in _records(pytester, "k")}
    assert [records[i]["status"] for i in ("q0", "q1", "q2")] == ["ok", "crash", "ok"]
    crash = records["q1"]["crash"]
    assert crash["signal"] == "SIGKILL" and crash["model"] == "scripted"
    assert "killed by SIGKILL" in records["q1"]["error"] and records["q1"]["correct"] is None
    [row] = _summary(pytester, "k")["summary"]
    assert (row["items"], row["correct"], row["errors"], row["crashes"]) == (3, 2, 1, 1)
    result.stdout.fnmatch_lines(["*harness scoreboard*", "*1 case(s) crashed their model's host*"])
    # The host of each case is the one the monitor sampled: not the pytest process.
    host = _summary(pytester, "k")["metadata"]["backends"]["scripted"]["hosts"][0]
    assert host["starts"] == 2 and host["crashes"] == 1 and host["pid"] != os.getpid()

    # --resume asks the crashed case again, and only it.
    again = pytester.runpytest_subprocess("test_toy.py", "--models-file", str(pytester.path / "hosted.toml"),
                                          "--models", "scripted", "--report-dir", str(pytester.path / "reports"),
                                          "-p", "no:cacheprovider", "--resume", "k")
    assert again.ret == 0
    assert again.parseoutcomes().get("skipped") == 2 and again.parseoutcomes().get("passed") == 1
    latest = {r["item_id"]: r["status"] for r in _records(pytester, "k")}
    assert latest == {"q0": "ok", "q1": "ok", "q2": "ok"}


def test_a_segfault_in_the_host_is_a_crash_with_its_signal_and_stderr(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ["fine", "SEGV now", "after"], "--run-id", "s", segfault_on="SEGV")
    assert result.ret == 1
    records = {r["item_id"]: r for r in _records(pytester, "s")}
    assert [records[i]["status"] for i in ("q0", "q1", "q2")] == ["ok", "crash", "ok"]
    crash = records["q1"]["crash"]
    assert crash["signal"] == "SIGSEGV"
    assert "Segmentation fault" in crash["stderr_tail"]  # faulthandler's report, from the host's stderr
    assert "_native_crash" in crash["stderr_tail"]  # with the Python stack where it happened
    assert _summary(pytester, "s")["summary"][0]["crashes"] == 1
    # The case's transcript holds the prompt it was asked and the crash, as a note
    messages = records["q1"]["transcript"]["messages"]
    assert [(m["role"], m["content"]) for m in messages[:1]] == [("prompt", "SEGV now")]
    assert messages[-1]["role"] == "note" and "HostCrash" in messages[-1]["content"]
    # `harness show` and report.html's item browser show the crash: its signal and stderr's tail
    shown = subprocess.run([sys.executable, "-m", "harness.commands.cli", "show",
                            str(pytester.path / "reports" / "s"), "q1"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "status   crash" in shown.stdout and "reason   scripted: the model host killed by SIGSEGV" in shown.stdout
    assert "crash    the model host of scripted killed by SIGSEGV; the end of its stderr:" in shown.stdout
    assert "Segmentation fault" in shown.stdout
    page = (pytester.path / "reports" / "s" / "report.html").read_text()
    data = json.loads(page.split('id="item-data">', 1)[1].split("</script>", 1)[0])
    [answer] = [a for item in data["items"] if item["id"] == "q1" for a in item["answers"]]
    assert answer["status"] == "crash" and "killed by SIGSEGV" in answer["reason"]
    assert answer["crash"].startswith("the model host of scripted killed by SIGSEGV")
    assert "_native_crash" in answer["crash"]


def test_three_crashes_in_a_row_retire_the_model(pytester: pytest.Pytester) -> None:
    prompts = ["SEGV 1", "SEGV 2", "SEGV 3", "fine", "fine again"]
    result = _run(pytester, prompts, "--run-id", "r", segfault_on="SEGV")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("failed"), outcomes.get("skipped")) == (3, 2)
    result.stdout.fnmatch_lines(["*crashed 3 times in a row*remaining cases are skipped*"])
    statuses = [r["status"] for r in _records(pytester, "r")]
    assert statuses == ["crash", "crash", "crash"]  # skipped cases leave no record
    [row] = _summary(pytester, "r")["summary"]
    assert (row["crashes"], row["scored"]) == (3, 0)


def test_a_probe_crash_turns_extra_buffer_types_off(pytester: pytest.Pytester) -> None:
    # The double plays llama.cpp on an AMX CPU: it crashes unless use_extra_bufts = false.
    result = _run(pytester, ["a", "b"], "--run-id", "p", amx_crash=True)
    assert result.ret == 0, result.stdout.str()
    summary = _summary(pytester, "p")
    assert [r["status"] for r in _records(pytester, "p")] == ["ok", "ok"]
    described = summary["metadata"]["backends"]["scripted"]
    assert described["extra_bufts"] == "off" and "crashed the host (SIGSEGV)" in described["extra_bufts_why"]
    [host] = described["hosts"]
    assert (host["starts"], host["crashes"]) == (2, 0)  # the probe's crash is a finding, not a case's
    loads = summary["models"]["scripted"]
    assert loads["load_s"] > 0 and loads["rss_after_load_mb"] > 10 and loads["extra_bufts"] == "off"
    assert "## Model hosts" in (pytester.path / "reports" / "p" / "summary.md").read_text()


def test_two_xdist_workers_share_one_host(pytester: pytest.Pytester) -> None:
    """One PID, one load: the first worker starts the host, the other connects to it."""
    prompts = ["a", "b", "c", "d", "e", "f"]
    result = _run(pytester, prompts, "--run-id", "x", "-n", "2", sleep_s=0.3)
    assert result.ret == 0, result.stdout.str()
    described = _summary(pytester, "x")["metadata"]["backends"]["scripted"]
    hosts = described["hosts"]
    assert described["processes"] == 2 and len(hosts) == 2  # both workers loaded the model...
    assert len({h["pid"] for h in hosts}) == 1 and hosts[0]["pid"] != os.getpid()  # ...into one host
    assert sum(h["starts"] for h in hosts) == 1 and all(h["shared"] for h in hosts)
    assert hosts[0]["load_s"] == hosts[1]["load_s"]  # the one load, reported by both
    records = _records(pytester, "x")
    assert {r["status"] for r in records} == {"ok"}
    # Each case's CPU is its share as the host counted it, not the host's whole time while it ran.
    for r in records:
        assert r["resources"]["cpu_source"] == "host share by tokens"
        assert r["resources"]["cpu_s"] == r["timings"]["server"]["host_cpu_s"] < 0.2  # the double sleeps
        # Its user and system parts are scaled to the share too, so they add up to it.
        parts = r["resources"]["cpu_user_s"] + r["resources"]["cpu_system_s"]
        assert parts == pytest.approx(r["resources"]["cpu_s"], abs=1e-6)
    [row] = _summary(pytester, "x")["summary"]
    assert row["cpu_user_s"] + row["cpu_system_s"] == pytest.approx(row["cpu_s"], abs=1e-6)
    loads = _summary(pytester, "x")["models"]["scripted"]
    assert (loads["hosts"], loads["starts"]) == (1, 1)


def test_a_shared_host_that_segfaults_crashes_the_case_it_computed_only(pytester: pytest.Pytester) -> None:
    """The call the host was computing crashes; the other worker's call queued behind it in the
    host is asked again of the next host (`running` names the call being computed)."""
    prompts = ["a", "b", "SEGV", "c", "d", "e"]
    result = _run(pytester, prompts, "--run-id", "xs", "-n", "2", sleep_s=0.5, segfault_on="SEGV")
    assert result.ret == 1
    statuses = {r["item_id"]: r["status"] for r in _records(pytester, "xs")}
    assert statuses["q2"] == "crash" and sorted(statuses.values()).count("crash") == 1, statuses
    assert len(statuses) == 6 and result.parseoutcomes().get("failed") == 1
    hosts = _summary(pytester, "xs")["metadata"]["backends"]["scripted"]["hosts"]
    assert sum(h["starts"] for h in hosts) == 2 and sum(h["crashes"] for h in hosts) == 1


def _spec(**options: Any) -> ModelSpec:
    return ModelSpec(name="scripted", backend="scripted", model="script", host=True,
                     options={"steps": ["one", "two"], **options})


def test_the_proxy_offers_what_the_hosted_backend_offers() -> None:
    hosted = create_backend(_spec())
    try:
        assert isinstance(hosted, HostedBackend)
        local = ScriptedBackend(_spec())
        assert hosted.abilities == local.abilities == frozenset({"count_tokens"})
        assert hosted.token_count_source == "estimate" and hosted.supports_loglikelihood is False
        pid = hosted.process()
        assert pid is not None and pid != os.getpid()
        assert [hosted.generate(Request(prompt="x")).text for _ in range(2)] == ["one", "two"]
        assert hosted.count_tokens("three words here") == 3
        with pytest.raises(Unsupported):
            hosted.chat_text(({"role": "user", "content": "hi"},))
        assert hosted.describe()["host"]["pid"] == pid
    finally:
        hosted.close()
    assert hosted.process() is not None  # a closed backend asked again starts a new host
    hosted.close()


def test_a_transcript_is_built_from_a_hosted_models_answers() -> None:
    """The call wrapper builds the transcript here from the Generation that crossed the host's
    pipe: a tool call's raw arguments and why they do not parse survive the pickle."""
    from harness.core.transcript import TranscriptBuilder
    from harness.models.call import ModelCall

    broken = {"tool_calls": [{"name": "lookup", "arguments": "{city: Oslo"}]}
    hosted = create_backend(_spec(steps=[broken, "done"]))
    try:
        assert isinstance(hosted, HostedBackend)
        call = ModelCall(hosted.spec, hosted)
        call.transcript = builder = TranscriptBuilder()
        first = call.generate(Request(messages=({"role": "user", "content": "weather?"},)))
        assert first.tool_calls[0].error is not None
        sent_call = first.tool_calls[0]
        call.note_tool_result(sent_call.id, "lookup", "error: unreadable", ok=False)
        call.generate(Request(messages=(
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": sent_call.id, "function": {"name": "lookup", "arguments": sent_call.raw_arguments}}]},
            {"role": "tool", "tool_call_id": sent_call.id, "content": "error: unreadable"})))
    finally:
        hosted.close()
    transcript = builder.build("done")
    assert transcript is not None
    assert [(m.role, m.model) for m in transcript.messages] == [
        ("user", "scripted"), ("assistant", "scripted"), ("tool", "scripted"), ("assistant", "scripted")]
    [sent] = transcript.messages[1].tool_calls
    assert (sent.name, sent.arguments) == ("lookup", "{city: Oslo")
    assert sent.error is not None and "not valid JSON" in sent.error
    assert transcript.messages[3].content == "done" and transcript.final == "done"


def test_an_error_in_the_host_keeps_its_type_and_message() -> None:
    hosted = create_backend(_spec(steps=[], then="error"))
    try:
        with pytest.raises(BackendError, match="script exhausted after 0 steps") as caught:
            hosted.generate(Request(prompt="x"))
        assert not isinstance(caught.value, HostCrash)
        assert isinstance(hosted, HostedBackend) and hosted.crashes == 0
    finally:
        hosted.close()


def test_a_model_that_fails_to_load_is_an_error_not_a_crash(tmp_path: Path) -> None:
    script = tmp_path / "steps.json"
    script.write_text("not json")
    spec = ModelSpec(name="broken", backend="scripted", model="script", host=True, options={"script": str(script)})
    with pytest.raises(BackendError, match="the model did not load: JSONDecodeError") as caught:
        create_backend(spec)
    assert not isinstance(caught.value, HostCrash)


@requires_llamacpp
@pytest.mark.slow
def test_two_local_models_in_one_run_each_measure_their_own_memory(bench: BenchRun) -> None:
    """Each model's peak RSS is its host's: the same with the other model loaded beside it."""
    def peaks(*models: str) -> dict[str, float]:
        run_id = "-".join(models)
        result = bench("--models", ",".join(models), "--samples", "4", "--run-id", run_id)
        assert result.ret == 0, result.stdout.str()[-3000:]
        summary = bench.summary(bench.reports / run_id)
        for name in models:  # each model's load went into the summary
            assert summary["models"][name]["load_s"] > 0 and summary["models"][name]["rss_after_load_mb"] > 50
        return {row["model"]: float(row["rss_peak_mb"]) for row in summary["summary"]}

    alone = {**peaks("gemma3-270m-q4"), **peaks("smollm2-135m")}
    together = peaks("gemma3-270m-q4", "smollm2-135m")
    for name, value in alone.items():
        assert abs(together[name] - value) <= 0.2 * value, (name, together[name], value)
    assert together["smollm2-135m"] < together["gemma3-270m-q4"]


def test_a_call_past_its_timeout_stops_its_host_and_the_next_call_gets_a_fresh_one() -> None:
    import time

    from harness.backends.base import BackendTimeout

    hosted = create_backend(_spec(sleep_s=2.0), timeout_s=0.5)
    try:
        first = hosted.process()
        start = time.perf_counter()
        with pytest.raises(BackendTimeout, match="no answer within 0.5 s"):
            hosted.generate(Request(prompt="x"))
        assert time.perf_counter() - start < 1.9  # not waited out
        assert isinstance(hosted, HostedBackend) and hosted.crashes == 0  # a timeout is no crash
        second = hosted.process()
        assert second is not None and second != first
    finally:
        hosted.close()


def test_a_shared_host_ends_when_its_only_client_dies_during_a_call(tmp_path: Path) -> None:
    """The client is SIGKILLed while the host computes its call: the host answers into a closed
    channel, counts the client out and, with nobody left, ends."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "client.py"
    script.write_text(
        "import sys\n"
        "from harness.backends.base import Request\n"
        "from harness.backends.hosted import HostedBackend\n"
        "from harness.models.registry import ModelSpec\n"
        "spec = ModelSpec(name='scripted', backend='scripted', model='script', host=True,\n"
        "                 options={'steps': ['yes'], 'then': 'repeat', 'sleep_s': 1.0})\n"
        f"backend = HostedBackend(spec, shared_by={str(tmp_path)!r})\n"
        "print(backend.process(), flush=True)\n"
        "backend.generate(Request(prompt='x'))\n")
    client = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    host = int(client.stdout.readline())
    time.sleep(0.3)  # the call is in the host now
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{host}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{host}").exists() or "Z" in Path(f"/proc/{host}/stat").read_text().split(") ")[1][:1]
