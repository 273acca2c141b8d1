"""The llama.cpp backend's chat prompts: the GGUF's own chat template (its metadata's
`tokenizer.chat_template`), rendered with llama-cpp-python's Jinja2 formatter after the history
is made plain (chat_format.py). A forced tool call ends the prompt in `<tool_call>` and carries
the JSON schema a grammar is built from. And the sampling the GGUF recommends for chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.backends.base import BackendError, Request
from harness.backends.chat_format import (
    FORCED_PREFIX,
    TemplateAbilities,
    forced_call_schema,
    offered_tools,
    plain_messages,
)


@dataclass
class ChatPrompt:
    text: str  # the rendered prompt, special tokens written out
    stop: list[str]
    forced: bool  # the prompt ends in FORCED_PREFIX and a grammar holds the call's JSON
    schema: dict[str, Any] | None  # that grammar's JSON schema


class ChatTemplate:
    """One model's chat template, and how to put a harness history through it."""

    def __init__(self, name: str, template: str, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.name = name
        self.source = template
        self.formatter = Jinja2ChatFormatter(template, eos_token=eos_token, bos_token=bos_token,
                                             add_generation_prompt=True)
        self.abilities = TemplateAbilities.of(template)

    def render(self, request: Request) -> ChatPrompt:
        tools = offered_tools(request.tools, request.tool_choice)
        messages = plain_messages(request.messages or (), tools, self.abilities)
        templated = list(tools) if self.abilities.takes_tools and tools else None
        try:
            result = self.formatter(messages=messages, tools=templated)
        except Exception as exc:  # jinja2 errors and the template's own raise_exception
            raise BackendError(f"{self.name}: its chat template failed on these messages: "
                               f"{type(exc).__name__}: {exc}") from exc
        text = result.prompt
        schema = forced_call_schema(tools, request.tool_choice) if tools else None
        if schema is not None:
            text += FORCED_PREFIX
        return ChatPrompt(text, list(self.abilities.stop), schema is not None, schema)


# The GGUF's recommended sampling (llama.cpp's `general.sampling.*` keys, which its server also
# starts from), by the name a Request gives each.
SAMPLING_KEYS = {"general.sampling.temp": "temperature", "general.sampling.top_p": "top_p",
                 "general.sampling.top_k": "top_k"}


def recommended_sampling(metadata: dict[str, str]) -> dict[str, float]:
    """What a GGUF's metadata recommends for sampling; empty where the file says nothing."""
    found: dict[str, float] = {}
    for key, name in SAMPLING_KEYS.items():
        try:
            if metadata.get(key) is not None:
                found[name] = float(metadata[key])
        except ValueError:  # a malformed value is no recommendation
            continue
    return found
