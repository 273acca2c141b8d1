"""A case's record, built once from what the case left behind: the test's outcome, the model calls
it made, the resources sampled around it and its transcript (the plugin hands them over from the
item's stash). Layered on core.record's build_record with what only a run knows: the host's CPU
share, a crash in the model's host, the endpoint a pooled request went to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

# At module level, not in case_record: this module is itself imported only when a run builds
# its first record, and five imports a case were a few microseconds of its overhead.
from harness.backends.base import BackendError, BackendTimeout, HostCrash
from harness.core.record import CaseInfo, CaseRecord, ModelUsage, Outcome, build_record
from harness.core.transcript import TranscriptBuilder
from harness.models.endpoints import endpoint_of, requests_by_endpoint
from harness.strategies.batched import apportioned_wall
from harness.suites.base import describe

if TYPE_CHECKING:
    from harness.models.call import ModelCall
    from harness.run.plugin import Case


@dataclass
class CaseTrace:
    """What a case left on its item's stash while it ran."""

    outcome: Outcome | None = None
    calls: list[ModelCall] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    transcript: TranscriptBuilder | None = None


def usage_by_model(calls: list[ModelCall]) -> dict[str, ModelUsage]:
    """Each model's share of the case, in the order first used (two wrappers of one model add up)."""
    models: dict[str, ModelUsage] = {}
    for call in calls:
        usage = call.usage()
        if call.name in models:
            known = models[call.name]
            for name in ("calls", "cache_hits", "retries", "prompt_tokens", "completion_tokens", "model_s", "cost",
                         "decode_s", "decode_tokens"):
                setattr(known, name, getattr(known, name) + getattr(usage, name))
        else:
            models[call.name] = usage
    return models


def case_record(case: Case, run_id: str, nodeid: str, call: pytest.CallInfo[None], trace: CaseTrace) -> CaseRecord:
    backend = case.model.backend if case.large is None else f"{case.model.backend}+{case.large.backend}"
    info = CaseInfo(run_id, nodeid, case.suite, case.item.id, case.label, backend, case.strategy,
                    case.item.reference, describe(case.item), dict(case.tags))
    failure = None
    outcome = trace.outcome
    exc = call.excinfo.value if call.excinfo is not None else None
    crash = host_crash(exc)
    if crash is not None:  # whatever the test recorded after it: the model's host died in this case
        failure = str(crash)
    elif outcome is None and exc is not None:
        failure = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    wall_s = call.duration
    if outcome is not None and isinstance(outcome.extra.get("batch"), dict):
        # Batched scoring: this case's own time plus its share of the batch call, not the batch's.
        wall_s = apportioned_wall(call.duration, outcome.extra["batch"], nodeid)
    calls = trace.calls
    rec = build_record(info, outcome, models=usage_by_model(calls), wall_s=wall_s, failure=failure,
                       timeout=isinstance(exc, BackendTimeout), resources=trace.resources,
                       crash=crash.to_dict() if crash is not None else None)
    builder = trace.transcript
    if builder is not None:
        rec.transcript = builder.build(rec.output if rec.output is not None else rec.prediction)
    hosted = rec.timings.server.get("host_cpu_s") is not None
    if hosted and "cpu_s" in rec.resources and "per_model" not in rec.resources:
        # A shared model host serves other workers' cases during this one: its sampled CPU time is
        # theirs too. The host's own apportionment (by tokens, backends/llamacpp_decode.py) counts.
        host_share(rec.resources, rec.timings.server)
    endpoints = {c.name: e for c in calls if (e := endpoint_of(c.backend))}  # options.base_urls
    if endpoints:
        rec.extra["endpoint"] = endpoints.pop(case.model.name, None) or next(iter(endpoints.values()))
    answered = requests_by_endpoint([c.backend for c in calls])  # a pool: which server took each request
    if answered:
        rec.extra["endpoint_requests"] = answered
    return rec


def host_share(resources: dict[str, Any], server: dict[str, Any]) -> None:
    """Put the host's share of its CPU time, as the host counted it (by tokens where it batched),
    in place of what was sampled from its PID during the case, which counts other workers' cases
    too. The per-model totals (sums over cases) then count the host's time once."""
    host_cpu = float(server["host_cpu_s"])
    for key in ("cpu_s", "cpu_user_s", "cpu_system_s"):
        if key in resources:
            resources[f"{key}_sampled"] = resources[key]
    resources["cpu_s"] = host_cpu
    resources["cpu_source"] = "host share by tokens"
    user, system = server.get("host_cpu_user_s"), server.get("host_cpu_system_s")
    if user is not None and system is not None:
        resources["cpu_user_s"], resources["cpu_system_s"] = float(user), float(system)
    else:  # a host that counted the total only: no split is better than one counted twice
        resources.pop("cpu_user_s", None)
        resources.pop("cpu_system_s", None)
    duration = resources.get("duration_s")
    if duration:
        resources["cpu_percent_mean"] = 100.0 * host_cpu / float(duration)


def host_crash(exc: BaseException | None) -> HostCrash | None:
    """The HostCrash behind a failure, also where a strategy wrapped it in another error."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, HostCrash):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
