"""What extraction data and answers look like: shared by the suite (harness/suites/extraction.py)
and its report (harness/report/extraction_metrics.py), so both read rows and judge exact matches
by one rule without the report importing the suite."""

from __future__ import annotations

SOURCE = "source"  # the input text column; every other column is a target field
# Columns a predictions CSV appends; reading one back as input ignores them.
OUTPUT_PREFIXES = ("pred_", "raw_")


def same_answer(prediction: str, reference: str) -> bool:
    """Exact match as the metrics count it: case-insensitive, surrounding whitespace stripped."""
    return prediction.strip().casefold() == reference.strip().casefold()
