"""Which models a run without --models collects when `-k` or `-m` names models.

`pytest benchmarks -k tinyllama` and `pytest benchmarks -m tier_large` must reach every model in
the registry, not only the default ones. So when a -k or -m expression mentions a model (a word in
a model's name, or a model marker: tier_*, backend_*), each registry model is tested against it;
every model the expression could select is collected, and pytest's own deselection then picks the
cases. A selected model that cannot run here is collected too, as skipped cases with the reason
(no server, not pulled, no API key, weights not cached): never silently absent.

Words the registry does not know (a subject, a suite, a test name) may match any model's cases,
so a model stays selected unless the expression is false for it whatever those words turn out to
be. An expression that mentions no model keeps the default selection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from harness.models.registry import ModelSpec, Selection, availability
from harness.run.internals import compile_expression

# Beyond this many unknown words, a model is kept rather than trying 2**n combinations.
_MAX_UNKNOWN = 10


def _keyword_hit(word: str, model: ModelSpec) -> bool:
    # As pytest's -k: a case-insensitive substring of a name or marker the case carries.
    word = word.lower()
    return any(word in name.lower() for name in (model.name, *model.markers))


def _marker_hit(word: str, model: ModelSpec) -> bool:
    return word in model.markers


def _possible(evaluate: Callable[[Callable[[str], bool]], bool], words: frozenset[str],
              known: dict[str, bool]) -> bool:
    """True when some truth values of the unknown words make the expression true."""
    unknown = sorted(words - set(known))
    if len(unknown) > _MAX_UNKNOWN:
        return True
    for values in itertools.product((False, True), repeat=len(unknown)):
        truth = {**known, **dict(zip(unknown, values))}
        if evaluate(truth.__getitem__):
            return True
    return False


def _filter(models: Iterable[ModelSpec], expression: str,
            hit: Callable[[str, ModelSpec], bool]) -> list[ModelSpec] | None:
    """The models the expression may select, or None when it mentions no model at all."""
    models = list(models)
    evaluate, words = compile_expression(expression)
    related = {w for w in words if any(hit(w, m) for m in models)}
    if not related:
        return None
    return [m for m in models if _possible(evaluate, words, {w: hit(w, m) for w in related})]


def select_by_expressions(registry: dict[str, ModelSpec], keyword: str | None,
                          markexpr: str | None) -> Selection | None:
    """The models a -k/-m run without --models collects, or None to keep the defaults.

    Raises SyntaxError for an expression pytest would reject too (pytest reports it).
    """
    chosen: list[ModelSpec] | None = None
    for expression, hit in ((keyword, _keyword_hit), (markexpr, _marker_hit)):
        if not expression:
            continue
        found = _filter(chosen if chosen is not None else registry.values(), expression, hit)
        if found is not None:
            chosen = found
    if chosen is None:
        return None
    reasons = {m.name: reason for m in chosen if (reason := availability(m)) is not None}
    return Selection(chosen, reasons)
