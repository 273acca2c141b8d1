"""The transformers backend's chat extras: its answer as text pieces while generate() runs, and
the sampling the model's generation_config recommends.

transformers calls a streamer's put() in the generating thread, with the prompt first and then
each step's new tokens, so the pieces need no thread of their own (TextIteratorStreamer's queue
and second thread are for callers that iterate; here a callback takes each piece).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from harness.backends.base import TextSink

# transformers' own value when a config asks for sampling and names no temperature.
LIBRARY_TEMPERATURE = 1.0


class TextPieces:
    """A generate() streamer for one sequence: decodes the tokens so far at each step and hands
    on the text not yet given. Text that may still become a stop string (the last len(stop) - 1
    characters) and a character whose bytes have not all come (U+FFFD at the end) wait for the
    next step; once a stop string or an end token appears, nothing more is given until finish().
    `clock` (the backend's first-token clock) sees every put()."""

    def __init__(self, tokenizer: Any, on_text: TextSink, stop: tuple[str, ...], end_ids: Collection[int],
                 clock: Any) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop = stop
        self.end_ids = set(end_ids)
        self.clock = clock
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.tokens: list[int] = []
        self.given = ""
        self.done = False
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        self.clock.put(value)
        if not self.prompt_seen:  # the first put() is the prompt
            self.prompt_seen = True
            return
        if self.done:
            return
        for token in value.reshape(-1).tolist():
            if token in self.end_ids:
                self.done = True
                break
            self.tokens.append(int(token))
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        if cut >= 0:
            text, self.done = text[:cut], True
        elif self.hold:
            text = text[:-self.hold]
        while text.endswith("\ufffd"):
            text = text[:-1]
        self._give(text)

    def end(self) -> None:
        self.clock.end()

    def finish(self, final: str) -> None:
        """The answer as the backend returns it: what of it was not given yet goes now."""
        self._give(final)

    def _give(self, text: str) -> None:
        # Only ever more of the same text: a decode that rewrites what was given (a tokenizer
        # that merges across steps) waits until the text goes on from what was given.
        if text.startswith(self.given) and len(text) > len(self.given):
            piece, self.given = text[len(self.given):], text
            self.on_text(piece)


def recommended_sampling(config: Any) -> dict[str, float]:
    """What a model's generation_config (a transformers GenerationConfig) sets for sampling,
    beyond transformers' defaults; empty where it sets nothing. A config that asks for sampling
    (do_sample) without a temperature gets the one transformers would use."""
    diff = config.to_diff_dict() if config is not None else {}
    found = {name: float(diff[name]) for name in ("temperature", "top_p", "top_k")
             if isinstance(diff.get(name), (int, float)) and not isinstance(diff.get(name), bool)}
    if diff.get("do_sample") is True:
        found.setdefault("temperature", LIBRARY_TEMPERATURE)
    return found
