"""The case record: one flat, JSON-serializable result per benchmark case.

It rides on the pytest report's user_properties (so JUnit XML and pytest-xdist carry it to the
controller) under the key RECORD_KEY; the controller writes it to the store and the reports.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RECORD_KEY = "harness_record"

# invalid_output: the model answered, but not in the form the suite asked for (JSON that does not
# validate): a measured model failure, scored as wrong, unlike error/timeout.
Status = Literal["ok", "wrong", "invalid_output", "error", "timeout"]
STATUSES: tuple[Status, ...] = ("ok", "wrong", "invalid_output", "error", "timeout")


@dataclass
class CaseRecord:
    run_id: str
    case_id: str  # the pytest node id: unique within a run
    suite: str
    item_id: str
    model: str
    backend: str
    strategy: str = "single"
    mode: str = ""
    prediction: str | None = None
    reference: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    correct: bool | None = None
    status: Status = "ok"
    error: str | None = None
    # prompt_tokens, completion_tokens, source
    usage: dict[str, Any] = field(default_factory=dict)
    # wall_s (the whole case), model_s (inside model calls), first_token_s
    timings: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRecord:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


def junit_properties(record: CaseRecord) -> list[tuple[str, object]]:
    """The few figures worth a glance in a JUnit XML viewer, beside the full record."""
    props: list[tuple[str, object]] = [
        ("status", record.status),
        ("correct", record.correct),
        ("latency_s", round(float(record.timings.get("wall_s", 0.0)), 6)),
        ("prompt_tokens", record.usage.get("prompt_tokens", 0)),
        ("completion_tokens", record.usage.get("completion_tokens", 0)),
    ]
    props += [(f"score_{name}", value) for name, value in sorted(record.scores.items())]
    return props
