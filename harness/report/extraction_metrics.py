"""Extraction metrics per (model, field), the metrics CSV, the predictions CSVs, and re-scoring.

Everything is computed from the case records of a run (results.jsonl), so `harness rescore`
rebuilds exactly what the run wrote, without inference. Each metric comes from its own library:

- ROUGE-1/2/L: rouge-score, F-measure, no stemmer, averaged over rows (0-1). Its default tokenizer
  keeps only a-z and 0-9, which would cut German words at every umlaut ("Anämie" -> "an", "mie"),
  so the tokens here are lower-cased Unicode words; the scoring is rouge-score's own.
- BLEU and chrF++: sacrebleu, corpus level, as sacrebleu reports them (0-100); chrF++ is chrF with
  word_order=2. Corpus BLEU counts 4-grams: a field whose values are all shorter than four tokens
  scores 0 even when every row is right; read chrF++ and exact match for such fields.
- BERTScore F1: bert-score with a local model folder, mean over rows; else empty, and the reason
  is in extraction/metadata.json.
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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.report.aggregate import SCORED_STATUSES
from harness.report.write import RESULTS_FILE, latest_per_case, read_results
from harness.suites.extraction import SOURCE, same_answer

SUITE = "extraction"
FOLDER = "extraction"
METRICS_CSV = "metrics.csv"
METADATA_JSON = "metadata.json"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# The quality metrics and their scale's top, for plots that put them on one 0-1 axis.
QUALITY = {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "bleu": 100.0, "chrf": 100.0,
           "bertscore_f1": 1.0, "exact_match": 1.0}


@dataclass
class MetricRow:
    model: str
    field: str
    n_total: int
    n_valid: int
    rouge1: float | None = None
    rouge2: float | None = None
    rougeL: float | None = None
    bleu: float | None = None
    chrf: float | None = None
    bertscore_f1: float | None = None
    exact_match: float | None = None
    runtime_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_per_sec: float | None = None


COLUMNS = tuple(f.name for f in fields(MetricRow))


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


def extraction_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """model -> its extraction records (the latest per case), in the CSV's row order."""
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for record in latest_per_case([dict(r) for r in records if r.get("suite") == SUITE]):
        by_model.setdefault(str(record.get("model")), []).append(record)
    for group in by_model.values():
        group.sort(key=lambda r: (r.get("extra", {}).get("index", 0), str(r.get("case_id"))))
    return dict(sorted(by_model.items()))


def reference_of(record: Mapping[str, Any]) -> dict[str, str]:
    return json.loads(record.get("reference") or "{}")


def prediction_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The predicted fields; an invalid answer (no prediction) is empty strings."""
    if record.get("status") == "invalid_output" or not record.get("prediction"):
        return {}
    return json.loads(record["prediction"])


def compute(records: Iterable[Mapping[str, Any]], bertscore_model: Path | None = None
            ) -> tuple[list[MetricRow], dict[str, Any]]:
    """One MetricRow per (model, field), and notes for extraction/metadata.json."""
    model_name = None if bertscore_model is None else str(bertscore_model)
    notes: dict[str, Any] = {"bertscore": {"model": model_name}, "errors": {}}
    if bertscore_model is None:
        notes["bertscore"]["reason"] = ("no local model given (--extraction-bertscore-model PATH), "
                                        "so BERTScore was not computed")
    scorer = None
    if bertscore_model is not None:
        try:
            scorer = bert_scorer(bertscore_model)
        except (ImportError, OSError) as error:  # the other metrics still count
            notes["bertscore"]["reason"] = (f"BERTScore not computed: {type(error).__name__}: {error} "
                                            "(it needs `pip install bert-score` and a local model folder)")
    rows: list[MetricRow] = []
    for model, group in extraction_records(records).items():
        answered = [r for r in group if r.get("status") in SCORED_STATUSES]
        notes["errors"][model] = len(group) - len(answered)
        runtime = sum(float((r.get("timings") or {}).get("model_s") or 0.0) for r in group)
        tokens_in = sum(int((r.get("usage") or {}).get("prompt_tokens") or 0) for r in group)
        tokens_out = sum(int((r.get("usage") or {}).get("completion_tokens") or 0) for r in group)
        n_valid = sum(r.get("status") != "invalid_output" for r in answered)
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


def write_metrics_csv(rows: Sequence[MetricRow], path: Path) -> None:
    """The metrics CSV; figures unrounded (repr), missing ones empty, so re-scoring diffs clean."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            data = asdict(row)
            writer.writerow(["" if data[c] is None else repr(data[c]) if isinstance(data[c], float)
                             else data[c] for c in COLUMNS])


def read_metrics_csv(path: Path) -> list[MetricRow]:
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    converted = []
    for cells in table:
        values: dict[str, Any] = {}
        for column in COLUMNS:
            text = cells[column]
            if column in ("model", "field"):
                values[column] = text
            elif column in ("n_total", "n_valid", "tokens_in", "tokens_out"):
                values[column] = int(text)
            else:
                values[column] = float(text) if text else None
        converted.append(MetricRow(**values))
    return converted


def write_predictions(records: Iterable[Mapping[str, Any]], folder: Path) -> list[Path]:
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
                extra = record.get("extra") or {}
                inputs = extra.get("row") or {**reference_of(record), SOURCE: ""}
                predicted = prediction_of(record)
                writer.writerow([inputs.get(SOURCE, ""), *(inputs.get(n, "") for n in field_names),
                                 *(predicted.get(n, "") for n in field_names),
                                 extra.get("output", record.get("error") or "")])
        written.append(path)
    return written


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_outputs(run_dir: Path, records: Sequence[Mapping[str, Any]], *, metrics: bool = True,
                  bertscore_model: Path | None = None) -> list[MetricRow]:
    """<run_dir>/extraction/: predictions CSVs, and with `metrics` the metrics CSV, plots, notes."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    write_predictions(records, folder)
    if not metrics:
        return []
    rows, notes = compute(records, bertscore_model)
    write_metrics_csv(rows, folder / METRICS_CSV)
    from harness.report.extraction_plots import write_plots  # matplotlib: only when plotting

    notes["plots"] = [p.name for p in write_plots(rows, folder / "plots")]
    notes["scales"] = {name: f"0-{top:g}" for name, top in QUALITY.items()}
    (folder / METADATA_JSON).write_text(json.dumps(notes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return rows


def finish(run_dir: Path, records: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]) -> None:
    """The end-of-run step (harness.session.FINISHERS): settings come from the run's metadata."""
    settings = metadata.get("settings") or {}
    bertscore = settings.get("extraction_bertscore_model")
    metrics = settings.get("extraction_metrics", True) is not False
    missing = [name for name in ("rouge_score", "sacrebleu", "matplotlib")
               if importlib.util.find_spec(name) is None]
    if metrics and missing:
        # The answers are in results.jsonl whatever happens; say how to score them later.
        warnings.warn(f"extraction metrics need {', '.join(missing)}: pip install -e '.[extraction]', "
                      f"then `harness rescore {run_dir}`")
        metrics = False
    write_outputs(run_dir, records, metrics=metrics, bertscore_model=Path(bertscore) if bertscore else None)


def rescore(run_dir: str | Path, bertscore_model: Path | None = None) -> list[MetricRow]:
    """Metrics, predictions and plots again from a run's stored records, without inference."""
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    if not results.exists():
        raise FileNotFoundError(f"{results}: no results to score (is {run_dir} a run folder?)")
    records = [r for r in read_results(results) if r.get("suite") == SUITE]
    if not records:
        raise ValueError(f"{results}: no extraction records in this run")
    if bertscore_model is None:
        metadata_path = run_dir / "metadata.json"
        settings = json.loads(metadata_path.read_text(encoding="utf-8")).get("settings", {}) \
            if metadata_path.exists() else {}
        if settings.get("extraction_bertscore_model"):
            bertscore_model = Path(settings["extraction_bertscore_model"])
    return write_outputs(run_dir, records, metrics=True, bertscore_model=bertscore_model)
