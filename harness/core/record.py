"""The case record: the one typed result of a benchmark case, from the test function to every report.

A record is built in one place (`build_record`), rides as JSON on the pytest report's
user_properties (so JUnit XML and pytest-xdist carry it to the controller) under RECORD_KEY, is
written to results.jsonl and the stores, and is read back into the same type (`CaseRecord.from_dict`)
by every report, `harness report`, `harness rescore` and `harness compare`.

The status vocabulary and the rule for what counts in accuracy live here too, so no two reports
can count differently:

- ok / wrong: the suite scored an answer; invalid_output: the model answered, but not in the form
  asked (JSON that does not validate): a measured model failure, scored and wrong;
- error / timeout: the harness or backend failed: no score; reported beside accuracy, never in it;
- crash: the process hosting the model died during the case (a signal, an OOM kill): no score,
  counted with the errors; `crash` holds the signal and the tail of the host's stderr.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from harness.core.transcript import Transcript

RECORD_KEY = "harness_record"
_ANONYMOUS = itertools.count(1)
# 1: the loose records of the first wave (tool calls, per-model usage and attempts inside `extra`).
# 2: typed parts for them; from_dict upgrades a version-1 record.
SCHEMA_VERSION = 2

Status = Literal["ok", "wrong", "invalid_output", "error", "timeout", "crash"]
STATUSES: tuple[Status, ...] = ("ok", "wrong", "invalid_output", "error", "timeout", "crash")
# What counts in accuracy's denominator: an answer the suite scored.
SCORED_STATUSES: frozenset[str] = frozenset({"ok", "wrong", "invalid_output"})
# Failures of the harness or the backend: reported beside accuracy, outside it.
ERROR_STATUSES: frozenset[str] = frozenset({"error", "timeout", "crash"})


def _number(value: Any) -> float | None:
    """A float from a JSON value; None for anything missing or not numeric (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


_KNOWN: dict[type, frozenset[str]] = {}


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = _KNOWN.get(cls)
    if names is None:  # fields() builds its tuple anew each call
        names = _KNOWN[cls] = frozenset(f.name for f in fields(cls))
    return {key: value for key, value in data.items() if key in names}


@dataclass
class UsageRecord:
    """Tokens of a case (or of one model in it) and where the count came from."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: str = "none"  # server, tokenizer, estimate, none

    @classmethod
    def from_value(cls, data: Any) -> UsageRecord:
        if isinstance(data, UsageRecord):
            return data
        data = data if isinstance(data, Mapping) else {}
        return cls(int(_number(data.get("prompt_tokens")) or 0), int(_number(data.get("completion_tokens")) or 0),
                   str(data.get("source") or "none"))

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class TimingRecord:
    """Seconds. wall_s: the whole case; model_s: inside model calls; None where not measured."""

    wall_s: float | None = None
    model_s: float | None = None
    first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    server: dict[str, float] = field(default_factory=dict)  # durations the server reported

    @classmethod
    def from_value(cls, data: Any) -> TimingRecord:
        if isinstance(data, TimingRecord):
            return data
        data = data if isinstance(data, Mapping) else {}
        server = data.get("server") if isinstance(data.get("server"), Mapping) else {}
        return cls(_number(data.get("wall_s")), _number(data.get("model_s")), _number(data.get("first_token_s")),
                   _number(data.get("decode_tokens_per_s")),
                   {str(k): float(v) for k, v in server.items() if _number(v) is not None})


@dataclass
class ToolCallRecord:
    """One tool call a model made in a case: what it asked (raw arguments) and what it got."""

    turn: int
    name: str
    arguments: str  # raw, as the model wrote them
    ok: bool
    result: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, data: Any) -> ToolCallRecord:
        if isinstance(data, ToolCallRecord):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"a tool call must be an object, not {type(data).__name__}")
        arguments = data.get("arguments", "")
        return cls(int(data.get("turn") or 0), str(data.get("name", "")),
                   arguments if isinstance(arguments, str) else json.dumps(arguments),
                   bool(data.get("ok", True)), str(data.get("result", "")))


@dataclass
class ModelUsage:
    """What the calls of one model added up to within a case (pair strategies have two)."""

    calls: int = 0  # model calls made, retries included, cache hits excluded
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: str = "none"
    model_s: float = 0.0
    first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    cost: float = 0.0
    server: dict[str, float] = field(default_factory=dict)
    # Generation after each call's first token, and its tokens: the run's decode rate sums these
    # (report/engine_share.py), where averaging per-case rates would weigh short answers alike.
    decode_s: float = 0.0
    decode_tokens: int = 0

    @classmethod
    def from_value(cls, data: Any) -> ModelUsage:
        if isinstance(data, ModelUsage):
            return data
        return cls(**_known(cls, data if isinstance(data, Mapping) else {}))


@dataclass
class Try:
    """One try of a code case: who answered, how (variant), and what the sandbox said."""

    model: str
    variant: str
    passed: bool
    outcome: str  # the sandbox's: pass, fail, timeout, crash
    detail: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_s: float = 0.0
    sandbox_s: float = 0.0
    sandbox_cpu_s: float = 0.0

    @classmethod
    def from_value(cls, data: Any) -> Try:
        if isinstance(data, Try):
            return data
        return cls(**_known(cls, data if isinstance(data, Mapping) else {}))


# Keys of `record(...)` (and of version-1 `extra`) that are typed fields of the record.
TYPED_OUTCOME_FIELDS = ("output", "tool_calls", "turns", "stopped", "tries", "settled_by_small", "isolation",
                        "confidence", "confidence_source")


@dataclass
class CaseRecord:
    run_id: str
    case_id: str  # the pytest node id: unique within a run
    suite: str
    item_id: str
    model: str  # the model column: `small+large` for a pair strategy
    backend: str
    strategy: str = "single"
    mode: str = ""
    prediction: str | None = None
    reference: str | None = None
    input_text: str | None = None  # the item as a person reads it (suites/base.py describe)
    tags: dict[str, str] = field(default_factory=dict)  # the suite's item tags (MMLU: subject), as data
    scores: dict[str, float] = field(default_factory=dict)
    correct: bool | None = None
    status: Status = "ok"
    error: str | None = None
    usage: UsageRecord = field(default_factory=UsageRecord)
    timings: TimingRecord = field(default_factory=TimingRecord)
    resources: dict[str, Any] = field(default_factory=dict)  # the monitor's window (harness/monitor/sampler.py)
    cost: float = 0.0
    attempts: int = 0  # model calls, retries included
    cache_hits: int = 0
    output: str | None = None  # the model's raw final text, where it differs from the prediction
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    turns: int | None = None  # model turns of a tool loop (router, agent)
    stopped: str | None = None  # why a tool loop ended: answer, finish_tool, max_turns
    per_model: dict[str, ModelUsage] = field(default_factory=dict)
    tries: list[Try] = field(default_factory=list)  # code suites: every sample / cascade step
    settled_by_small: bool | None = None  # cascade: the small model's answer was final
    isolation: str | None = None  # code suites: the sandbox the program ran in
    transcript: Transcript | None = None  # the conversation, bounded (harness/core/transcript.py)
    confidence: float | None = None  # how sure the answering model was, in [0, 1] (harness/core/confidence.py)
    confidence_source: str | None = None  # what it is: choice_margin, mean_logprob, agreement, tests_passed
    # status crash: {model, signal, exit_code, stderr_tail} of the model host that died
    crash: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # suite-specific details, free-form
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # Parts given as plain dicts (JSON read back, tests, older callers) become their types.
        if self.status not in STATUSES:
            raise ValueError(f"case {self.case_id}: unknown status {self.status!r}; one of {', '.join(STATUSES)}")
        self.usage = UsageRecord.from_value(self.usage)
        self.timings = TimingRecord.from_value(self.timings)
        self.tool_calls = [ToolCallRecord.from_value(c) for c in self.tool_calls]
        self.per_model = {str(k): ModelUsage.from_value(v) for k, v in self.per_model.items()}
        self.tries = [Try.from_value(t) for t in self.tries]
        self.transcript = Transcript.from_value(self.transcript)

    # -- what counts -----------------------------------------------------------------------------
    @property
    def scored(self) -> bool:
        """The answer counts in accuracy's denominator."""
        return self.status in SCORED_STATUSES

    @property
    def is_error(self) -> bool:
        return self.status in ERROR_STATUSES

    @property
    def counts_correct(self) -> bool:
        """Counts in accuracy's numerator: scored, not invalid, and right by the suite's verdict
        (a suite that gives no verdict leaves it to the status ok/wrong)."""
        if not self.scored or self.status == "invalid_output":
            return False
        return self.status == "ok" if self.correct is None else bool(self.correct)

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON data: a value that is not a finite number (the log-likelihood of
        an impossible answer, -inf) becomes None, so every JSON reader and store can take it."""
        return _finite(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        """A record from its JSON form, of this schema or an older one; unknown keys are ignored."""
        data = dict(data)
        version = data.get("schema", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"case {data.get('case_id')!r}: record schema {version!r} is newer than this "
                             f"harness reads ({SCHEMA_VERSION}); upgrade llm-bench-harness")
        if version == 1:
            data = _upgrade_v1(data)
        missing = [name for name in ("suite", "model") if name not in data]
        if missing:
            raise ValueError(f"case record {data.get('case_id', '?')!r} lacks {', '.join(missing)}")
        # A record written by hand or by another tool may have no pytest node id: it is then a
        # case of its own (never merged with another as "the same case run again").
        if "case_id" not in data:
            data["case_id"] = f"anonymous-{next(_ANONYMOUS)}"
        data.setdefault("item_id", "")
        data.setdefault("run_id", "")
        data.setdefault("backend", "")
        data["item_id"] = str(data["item_id"])
        return cls(**_known(cls, data))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _finite(value: Any) -> Any:
    """dataclasses.asdict and the finite-number rule in one pass. asdict deep-copies every leaf;
    this copies only containers (leaves here are str, numbers, None), which made writing a
    record about ten times cheaper (bench/overhead.py: a record is converted per case)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    kind = type(value)
    names = _FIELD_NAMES.get(kind)
    if names is None and is_dataclass(value):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _finite(getattr(value, name)) for name in names}
    if isinstance(value, tuple):
        return type(value)(_finite(item) for item in value) if not hasattr(value, "_fields") else \
            type(value)(*(_finite(item) for item in value))
    return copy.deepcopy(value)


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept tool calls, per-model usage and attempts inside `extra`."""
    extra = dict(data.get("extra") or {})
    calls = extra.pop("calls", None)  # the router's list; its `tool_calls` was a count
    tool_calls = extra.pop("tool_calls", None)
    if isinstance(tool_calls, list):
        data["tool_calls"] = tool_calls
    elif isinstance(calls, list):
        data["tool_calls"] = calls
    for name in ("output", "turns", "stopped", "settled_by_small", "isolation"):
        if name in extra:
            data[name] = extra.pop(name)
    if isinstance(extra.get("per_model"), Mapping):
        data["per_model"] = extra.pop("per_model")
    if isinstance(extra.get("attempts"), list):
        data["tries"] = extra.pop("attempts")
    if "cache_hits" in extra:
        data["cache_hits"] = int(extra.pop("cache_hits") or 0)
    data["extra"] = extra
    data["schema"] = SCHEMA_VERSION
    return data


def as_record(data: CaseRecord | Mapping[str, Any]) -> CaseRecord:
    return data if isinstance(data, CaseRecord) else CaseRecord.from_dict(data)


def as_records(data: Iterable[CaseRecord | Mapping[str, Any]]) -> list[CaseRecord]:
    return [as_record(r) for r in data]


# -- building a record: the one place -----------------------------------------------------------


@dataclass
class Outcome:
    """What a test reported through the `record` fixture."""

    prediction: str | None
    scores: dict[str, float]
    correct: bool | None
    mode: str = ""
    status: str | None = None  # None: ok or wrong, from `correct`
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # TYPED_OUTCOME_FIELDS given
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseInfo:
    """Who answered what: known before the case runs."""

    run_id: str
    case_id: str
    suite: str
    item_id: str
    model: str
    backend: str
    strategy: str = "single"
    reference: str | None = None
    input_text: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def build_record(info: CaseInfo, outcome: Outcome | None, *, models: Mapping[str, ModelUsage],
                 wall_s: float | None, failure: str | None = None, timeout: bool = False,
                 resources: Mapping[str, Any] | None = None,
                 crash: Mapping[str, Any] | None = None) -> CaseRecord:
    """The record of one case from what the test reported, the model calls and the failure if any.

    `models` holds each model's ModelUsage in the order first used; `failure` says why the test
    failed (status error, or timeout when `timeout`) where it reported no outcome; `crash`, the
    details of a model host that died during the case (status crash, whatever the test reported).
    """
    rec = CaseRecord(run_id=info.run_id, case_id=info.case_id, suite=info.suite, item_id=info.item_id,
                     model=info.model, backend=info.backend, strategy=info.strategy, reference=info.reference,
                     input_text=info.input_text, tags=dict(info.tags))
    if outcome is not None:
        rec.prediction, rec.mode = outcome.prediction, outcome.mode
        rec.scores, rec.correct = dict(outcome.scores), outcome.correct
        rec.extra = dict(outcome.extra)
        status = outcome.status or ("ok" if outcome.correct else "wrong")
        if status not in STATUSES:
            raise ValueError(f"case {info.case_id}: unknown status {status!r}")
        rec.status = status
        if rec.status in ERROR_STATUSES:
            rec.error = outcome.error or "(no reason given)"
            rec.correct = None  # an error is not a score
        typed = {k: v for k, v in outcome.fields.items() if v is not None}
        for name in TYPED_OUTCOME_FIELDS:
            if name in typed:
                setattr(rec, name, typed[name])
        rec.tool_calls = [ToolCallRecord.from_value(c) for c in rec.tool_calls]
        rec.tries = [Try.from_value(t) for t in rec.tries]
    elif failure is not None:
        rec.status = "timeout" if timeout else "error"
        rec.error = failure
    else:
        rec.status, rec.error = "error", "the test recorded no outcome (call the record fixture)"
    if crash is not None:
        rec.status, rec.correct, rec.crash = "crash", None, dict(crash)
        rec.error = failure or rec.error or "the model host crashed"
    usages = list(models.values())
    rec.per_model = dict(models)
    rec.usage = UsageRecord(sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages),
                            next((u.source for u in usages if u.source != "none"), "none"))
    firsts = [u.first_token_s for u in usages if u.first_token_s is not None]
    rates = [u.decode_tokens_per_s for u in usages if u.decode_tokens_per_s is not None]
    server: dict[str, float] = {}
    for u in usages:
        for key, value in u.server.items():
            server[key] = server.get(key, 0.0) + value
    rec.timings = TimingRecord(wall_s=wall_s, model_s=sum(u.model_s for u in usages) if usages else None,
                               first_token_s=firsts[0] if firsts else None,
                               decode_tokens_per_s=rates[0] if len(rates) == 1 else None, server=server)
    rec.cost = sum(u.cost for u in usages)
    rec.attempts = sum(u.calls for u in usages)
    rec.cache_hits = sum(u.cache_hits for u in usages)
    rec.resources = dict(resources or {})
    return rec


def junit_properties(record: CaseRecord) -> list[tuple[str, object]]:
    """The few figures worth a glance in a JUnit XML viewer, beside the full record."""
    props: list[tuple[str, object]] = [
        ("status", record.status),
        ("correct", record.correct),
        ("latency_s", round(record.timings.wall_s or 0.0, 6)),
        ("prompt_tokens", record.usage.prompt_tokens),
        ("completion_tokens", record.usage.completion_tokens),
    ]
    props += [(f"score_{name}", value) for name, value in sorted(record.scores.items())]
    return props
