"""A case's transcript for people: in report.html's item browser (a conversation under each
answer, with the reason of every error, crash or invalid answer) and in the terminal
(`harness show RUN CASE`).

The page gets each transcript again bounded (PAGE_MESSAGE_CHARS per case) and the whole page a
budget (PAGE_CHARS), so a run of thousands of agent cases still opens; the terminal gets the
record's transcript whole (it is bounded when recorded, harness/core/transcript.py).
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from typing import Any

from harness.core.record import CaseRecord
from harness.core.transcript import Message, Transcript, bounded

PAGE_MESSAGE_CHARS = 12_000  # one case's transcript on the page
PAGE_CHARS = 8_000_000  # all transcripts on the page; later cases say `harness show` instead


def reason(record: CaseRecord) -> str | None:
    """Why a case is not a plain scored answer: the error of an error/timeout/crash, the reason an
    answer was invalid; None for ok and wrong."""
    if record.is_error or record.status not in ("ok", "wrong", "invalid_output"):
        return record.error or "(no reason recorded)"
    if record.status == "invalid_output":
        why = record.extra.get("invalid_reason") or record.error
        return str(why) if why else "the answer is not in the form asked (no reason recorded)"
    return None


def crash_details(record: CaseRecord) -> str | None:
    """A crashed case's host: which model's host died, how (signal or exit code), and the tail of
    its stderr (bounded when recorded, backends/hosted.py); None for any other case."""
    if record.crash is None:
        return None
    crash = record.crash
    how = (f"killed by {crash['signal']}" if crash.get("signal")
           else f"exited with code {crash.get('exit_code')}")
    text = f"the model host of {crash.get('model') or record.model} {how}"
    tail = str(crash.get("stderr_tail") or "").rstrip()
    return f"{text}; the end of its stderr:\n{tail}" if tail else f"{text}; it wrote nothing to stderr"


class PageBudget:
    """What is left of PAGE_CHARS while the page's data is built."""

    def __init__(self, chars: int = PAGE_CHARS) -> None:
        self.left = chars

    def take(self, record: CaseRecord) -> dict[str, Any] | None:
        """The record's transcript as the page embeds it; None past the budget or without one."""
        if record.transcript is None:
            return None
        messages, left_out = bounded(record.transcript.messages, chars=PAGE_MESSAGE_CHARS)
        data = asdict(Transcript(messages, record.transcript.final, record.transcript.left_out + left_out))
        size = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
        if size > self.left:
            return {"messages": [], "final": None, "left_out": len(record.transcript.messages),
                    "omitted": f"too long for the page: harness show <run> {record.case_id}"}
        self.left -= size
        return data


def answer_details(record: CaseRecord, budget: PageBudget) -> dict[str, Any]:
    """What the item browser adds to an answer: the reason, a crashed host's details and the
    transcript, with the case id where there is any of them. Only what a case has: most cases of a
    log-likelihood run have none, and the page of a whole MMLU split stays its size."""
    details = {"reason": reason(record), "crash": crash_details(record), "transcript": budget.take(record)}
    found = {key: value for key, value in details.items() if value is not None}
    return {"case": record.case_id, **found} if found else {}


STYLE = """
.reason{color:#8a5a00;margin:4px 0;white-space:pre-wrap}
.convo summary{cursor:pointer;color:#33415c}
.answer:has(details.convo[open]){grid-column:1/-1}
.msg{border-left:3px solid #c9ced8;margin:6px 0;padding:2px 8px}
.msg-assistant{border-color:#3b6fd8}.msg-tool{border-color:#17772d}.msg-tool-failed{border-color:#b3261e}
.msg-note{border-color:#8a5a00}.msg-system{border-color:#9aa3b2}
.msg .who{font-size:12px;color:#5b6475}
.call{background:#eef3fc;border:1px solid #c9d7f2;padding:4px;margin:4px 0;white-space:pre-wrap}
"""

# Builds the conversation under an answer with textContent only (model text is untrusted).
SCRIPT = """
function showTranscript(cell, a, el){
  if(a.reason){ cell.appendChild(el('div', 'reason', 'reason: ' + a.reason)); }
  if(a.crash){
    var crash = el('details', 'convo');
    crash.appendChild(el('summary', null, 'crash: ' + a.crash.split('\\n')[0]));
    crash.appendChild(el('pre', 'crash', a.crash));
    cell.appendChild(crash);
  }
  var t = a.transcript;
  if(!t) return;
  var calls = 0;
  t.messages.forEach(function(m){ calls += m.tool_calls.length; });
  var box = el('details', 'convo');
  box.appendChild(el('summary', null, 'conversation: ' + t.messages.length + ' messages, ' + calls +
                     ' tool calls' + (t.left_out ? ' (' + t.left_out + ' left out)' : '')));
  if(t.omitted) box.appendChild(el('div', 'muted', t.omitted));
  t.messages.forEach(function(m){
    var failed = m.role === 'tool' && m.ok === false;
    var div = el('div', 'msg msg-' + m.role + (failed ? ' msg-tool-failed' : ''));
    var who = m.role === 'assistant' ? m.model + ' answered' :
              m.role === 'tool' ? 'tool ' + m.name + (failed ? ' failed' : ' result') + ' -> ' + m.model :
              m.role === 'note' ? 'note' : m.role + ' -> ' + m.model;
    div.appendChild(el('div', 'who', who + (m.cut ? ' (' + m.cut + ' characters cut)' : '')));
    if(m.content) div.appendChild(el('pre', null, m.content));
    m.tool_calls.forEach(function(c){
      var call = el('div', 'call', 'calls ' + c.name + '(' + c.arguments + ')');
      if(c.error) call.appendChild(el('div', 'bad', 'unreadable call: ' + c.error));
      div.appendChild(call);
    });
    box.appendChild(div);
  });
  if(t.final !== null && t.final !== undefined) box.appendChild(el('div', 'who', 'final answer: ' + t.final));
  cell.appendChild(box);
}
"""


def _who(message: Message) -> str:
    if message.role == "assistant":
        return f"{message.model or 'model'} answered"
    if message.role == "tool":
        return f"tool {message.name} {'failed' if message.ok is False else 'result'} -> {message.model}"
    if message.role == "note":
        return "note"
    return f"{message.role} -> {message.model}"


def terminal(record: CaseRecord) -> str:
    """The case as text: what it is, its status and reason, then the conversation."""
    lines = [f"case     {record.case_id}", f"suite    {record.suite} / item {record.item_id}",
             f"model    {record.model} ({record.strategy})", f"status   {record.status}"]
    why = reason(record)
    if why:
        lines.append(f"reason   {why}")
    crash = crash_details(record)
    if crash:
        head, _, tail = crash.partition("\n")
        lines.append(f"crash    {head}")
        if tail:
            lines.append(textwrap.indent(tail, "  "))
    lines += [f"answer   {record.prediction!r}", f"expected {record.reference!r}", ""]
    if record.transcript is None:
        lines.append("(no transcript recorded: not a generative case, or recorded before transcripts)")
        return "\n".join(lines)
    for message in record.transcript.messages:
        cut = f" ({message.cut} characters cut)" if message.cut else ""
        lines.append(f"--- {_who(message)}{cut}")
        if message.content:
            lines.append(textwrap.indent(message.content, "  "))
        for call in message.tool_calls:
            lines.append(f"  >> calls {call.name}({call.arguments})")
            if call.error:
                lines.append(f"     unreadable call: {call.error}")
    if record.transcript.left_out:
        lines.append(f"({record.transcript.left_out} messages left out by the transcript's bound)")
    lines += ["---", f"final answer: {record.transcript.final!r}"]
    return "\n".join(lines)
