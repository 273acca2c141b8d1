"""Chat memory: facts stated early in a conversation, asked for later, under each memory strategy.

One case per conversation script (fixtures/chat/), model and memory strategy
(--chat-memory-strategies or --memory, default full,none,window:4,budget:512). The scripts' own
replies make the history; the model answers the questions (and any turn without a reply), and those
answers are scored.
Each case records, per question, whether the fact was still in the context the model saw, and per
turn the prompt's tokens and the latency. harness/report/chat_memory.py turns them into a report.
"""

from __future__ import annotations

import pytest

from harness.models.call import ModelCall
from harness.run.plugin import Case, parametrize_cases
from harness.run.session import RunSession
from harness.strategies import memory
from harness.suites import chat_memory


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    given = chat_memory.SUITE.values(metafunc.config).strategies
    try:
        strategies = [str(m) for m in memory.parse_list(given)]
    except memory.ChatMemoryError as exc:
        raise pytest.UsageError(f"--chat-memory-strategies (--memory): {exc}") from None
    parametrize_cases(metafunc, chat_memory.SUITE, strategies=strategies)


def test_chat_memory(case: Case, llm: ModelCall, record, harness: RunSession) -> None:
    strategy = memory.parse(case.strategy)
    item = case.item
    asked = chat_memory.questions(item)
    conversation = memory.Conversation(item.input["system"])
    count = memory.counter(llm)
    judged, tokens, latency, kept, sources = [], [], [], [], set()
    for index, turn in enumerate(item.input["turns"]):
        question = asked.get(index)
        if turn["reply"] is not None:  # a scripted turn: measure the context it would have had
            context = strategy.context(conversation, turn["user"], count)
            size = context.tokens if context.tokens is not None or count is None else count(context.messages)
            tokens.append(size)
            latency.append(None)
            kept.append(len(context.kept))
            conversation.add(turn["user"], turn["reply"])
            continue
        reply = memory.respond(
            llm, conversation, turn["user"], strategy, count=count,
            max_tokens=chat_memory.ANSWER_MAX_TOKENS if question else chat_memory.TURN_MAX_TOKENS,
            reference=question.accepted[0] if question else chat_memory.ACK)
        tokens.append(reply.prompt_tokens)
        latency.append(round(reply.latency_s, 6))
        kept.append(len(reply.context.kept))
        sources.add(reply.tokens_source)
        if question is not None:
            judged.append(chat_memory.judge(question, reply.text, reply.context.kept))
    record("; ".join(q["answer"] for q in judged), chat_memory.score(judged), mode=str(strategy),
           memory=str(strategy), questions=judged, prompt_tokens_per_turn=tokens,
           latency_s_per_turn=latency, kept_turns_per_turn=kept,
           prompt_tokens_source="+".join(sorted(sources)))
