"""The pytest plugin: options, model parametrization, fixtures, and the record of each case.

Thin by design (like pytest-xdist and pytest's junitxml): state lives in a RunSession on
config.stash; workers attach each case's record to its report's user_properties, and the
controller collects them, writes the store and reports once, and prints the scoreboard.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.backends.base import BackendError, BackendTimeout, Usage
from harness.call import ModelCall
from harness.endpoints import endpoint_of
from harness.record import RECORD_KEY, CaseRecord, junit_properties
from harness.registry import ModelSpec, RegistryError
from harness.report.tables import scoreboard
from harness.selection import select_by_expressions
from harness.session import RunSession
from harness.strategies.batched import apportioned_wall
from harness.settings import add_options, resolve
from harness.upcoming import same_kind_ahead
from harness.suites.base import Item, Score

SESSION = pytest.StashKey[RunSession]()
OUTCOME = pytest.StashKey["Outcome"]()
CALLS = pytest.StashKey[list[ModelCall]]()
RESOURCES = pytest.StashKey[dict[str, Any]]()
SUITES = ("mmlu", "extraction", "vue", "mbpp", "humaneval", "gsm8k")  # each suite's name is also a marker


@dataclass(frozen=True)
class Case:
    """What a parametrized benchmark test receives: one item of one suite, and who answers it.

    Single-model cases have `large=None`. Pair strategies (cascade, delegation) get the small
    model as `model` and the large one as `large`; the strategy decides who speaks first.
    """

    suite: str
    model: ModelSpec
    item: Item
    strategy: str = "single"
    large: ModelSpec | None = None

    @property
    def label(self) -> str:
        """The model column of the reports: `small+large` for a pair."""
        return self.model.name if self.large is None else f"{self.model.name}+{self.large.name}"


@dataclass
class Outcome:
    prediction: str | None
    score: Score
    mode: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    status: str | None = None  # None: ok or wrong, from score.correct


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    settings = resolve(config)
    try:
        session = RunSession(settings, config.rootpath, writer=not hasattr(config, "workerinput"))
    except (RegistryError, OSError, ValueError) as exc:  # a bad registry, or --resume of no run
        raise pytest.UsageError(str(exc)) from None  # pytest exits with 4, the message names it
    if settings.models is None:  # -k/-m naming a model reach every registry model (harness/selection.py)
        try:
            chosen = select_by_expressions(session.registry, config.option.keyword, config.option.markexpr)
        except SyntaxError:
            chosen = None  # pytest reports the bad expression itself
        if chosen is not None:
            session.models, session.unrunnable = chosen.models, chosen.unrunnable
    config.stash[SESSION] = session
    if session.writer:
        config.pluginmanager.register(Controller(config, session), "harness-controller")
    config.addinivalue_line("markers", "suite(name): the benchmark suite a test module runs")
    markers = {m for spec in session.registry.values() for m in spec.markers} | set(SUITES)
    for marker in sorted(markers):
        config.addinivalue_line("markers", f"{marker}: harness case selection")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # --resume: a case the earlier attempt answered is not asked again; its record still counts.
    run = config.stash[SESSION]
    for item in items:
        if item.nodeid in run.answered:
            item.add_marker(pytest.mark.skip(reason=f"already answered in run {run.run_id}"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        config.stash[SESSION].close()


def parametrize_cases(metafunc: pytest.Metafunc, suite: str, items: Sequence[Item],
                      pair_strategies: Sequence[str] = (), strategies: Sequence[str] = ("single",)) -> None:
    """Parametrize a benchmark test over (model x item); ids read `model-item`.

    Each single-model strategy other than "single" (such as "agent") adds cases `strategy-model-item`.

    With --small-model and --large-model, each of `pair_strategies` adds cases
    `strategy-small-large-item`, and both models also run alone on the same items.
    """
    session = metafunc.config.stash[SESSION]
    models = list(session.models)
    pair = session.pair
    if pair_strategies and pair is not None:
        models += [m for m in pair if m not in models]
    if not models:
        reasons = "; ".join(f"{n}: {r}" for n, r in session.unavailable_reasons().items())
        raise pytest.UsageError(f"no model selected to run here ({reasons}); choose with --models")
    cases = [(f"{model.name}-{item.id}" if strategy == "single" else f"{strategy}-{model.name}-{item.id}",
              Case(suite, model, item, strategy)) for strategy in strategies for model in models for item in items]
    if pair_strategies and pair is not None:
        small, large = pair
        cases += [(f"{strategy}-{small.name}-{large.name}-{item.id}", Case(suite, small, item, strategy, large))
                  for strategy in pair_strategies for item in items]
    params = []
    for case_id, case in cases:
        markers = {*case.model.markers, *(case.large.markers if case.large else ()), suite}
        marks = [getattr(pytest.mark, m) for m in sorted(markers)]
        if case.model.name in session.unrunnable:  # selected by -k/-m, but it cannot run here
            marks.append(pytest.mark.skip(reason=f"{case.model.name}: {session.unrunnable[case.model.name]}"))
        params.append(pytest.param(case, id=case_id, marks=marks))
    metafunc.parametrize("case", params)


@pytest.fixture(scope="session")
def harness(pytestconfig: pytest.Config) -> RunSession:
    return pytestconfig.stash[SESSION]


@pytest.fixture
def llm(request: pytest.FixtureRequest, case: Case, harness: RunSession) -> ModelCall:
    """The case's model, behind the call wrapper that times and counts every call."""
    call = harness.model_call(case.model)
    request.node.stash.setdefault(CALLS, []).append(call)
    return call


@pytest.fixture
def large_llm(request: pytest.FixtureRequest, case: Case, harness: RunSession) -> ModelCall:
    """The large model of a pair-strategy case (--large-model)."""
    if case.large is None:
        pytest.fail("large_llm is only for pair-strategy cases (see parametrize_cases)", pytrace=False)
    call = harness.model_call(case.large)
    request.node.stash.setdefault(CALLS, []).append(call)
    return call


@pytest.fixture
def upcoming(request: pytest.FixtureRequest) -> Callable[[], list[tuple[str, Any]]]:
    """(node id, case) of the cases of this test and model that this process runs after this one,
    computed when asked: the look-ahead of batched scoring (harness/strategies/batched.py)."""
    return lambda: same_kind_ahead(request.node)


@pytest.fixture
def record(request: pytest.FixtureRequest, harness: RunSession) -> Callable[..., None]:
    """record(prediction, score, mode=..., status=None, **extra): the case's measured outcome.

    `status="invalid_output"` marks an answer the suite could not read (scored as wrong).
    """

    def _record(prediction: str | None, score: Score, mode: str = "", status: str | None = None,
                **extra: Any) -> None:
        if status not in (None, "ok", "wrong", "invalid_output", "error"):
            raise ValueError(f"record(status={status!r}): a test may set ok, wrong, invalid_output or error")
        if status == "error" and not extra.get("error"):
            raise ValueError("record(status='error') needs error=<the reason>")
        request.node.stash[OUTCOME] = Outcome(prediction, score, mode, extra, status)
        if harness.settings.fail_on_wrong and not score.correct:
            pytest.fail(f"wrong answer: predicted {prediction!r}, expected "
                        f"{request.node.callspec.params['case'].item.reference!r}", pytrace=False)

    return _record


def _build_record(item: pytest.Item, call: pytest.CallInfo[None]) -> CaseRecord:
    case: Case = item.callspec.params["case"]  # type: ignore[attr-defined]
    outcome = item.stash.get(OUTCOME, None)
    calls = item.stash.get(CALLS, [])
    backend = case.model.backend if case.large is None else f"{case.model.backend}+{case.large.backend}"
    rec = CaseRecord(run_id="", case_id=item.nodeid, suite=case.suite, item_id=case.item.id,
                     model=case.label, backend=backend, strategy=case.strategy,
                     reference=case.item.reference)
    if outcome is not None:
        rec.prediction, rec.mode, rec.extra = outcome.prediction, outcome.mode, outcome.extra
        rec.scores, rec.correct = outcome.score.scores, outcome.score.correct
        verdict = "ok" if outcome.score.correct else "wrong"
        rec.status = outcome.status or verdict  # type: ignore[assignment]
        if rec.status == "error":
            rec.error = str(rec.extra.pop("error"))
            rec.correct = None  # an error is not a score
    elif call.excinfo is not None:
        exc = call.excinfo.value
        rec.status = "timeout" if isinstance(exc, BackendTimeout) else "error"
        rec.error = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    else:
        rec.status, rec.error = "error", "the test recorded no outcome (call the record fixture)"
    if calls:
        usage = sum((c.log.usage for c in calls), start=Usage())
        rec.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                     "source": usage.source}
    firsts = [c.log.first_token_s for c in calls if c.log.first_token_s is not None]
    decode = [c.log.decode_tokens_per_s for c in calls if c.log.decode_tokens_per_s is not None]
    rec.timings = {"wall_s": call.duration, "model_s": sum(c.log.model_s for c in calls),
                   "first_token_s": firsts[0] if firsts else None,
                   "decode_tokens_per_s": decode[0] if len(decode) == 1 else None}
    if isinstance(rec.extra.get("batch"), dict):  # batched scoring: this case's share, not the batch's
        rec.timings["wall_s"] = apportioned_wall(call.duration, rec.extra["batch"], item.nodeid)
    server = {k: v for c in calls for k, v in c.log.server.items()}
    if server:
        rec.timings["server"] = server
    rec.cost = sum(c.cost for c in calls)
    rec.attempts = sum(c.log.calls for c in calls)
    rec.resources = item.stash.get(RESOURCES, {})
    if any(c.log.cache_hits for c in calls):
        rec.extra["cache_hits"] = sum(c.log.cache_hits for c in calls)
    endpoints = {c.name: e for c in calls if (e := endpoint_of(c.backend))}  # options.base_urls
    if endpoints:
        rec.extra["endpoint"] = endpoints.pop(case.model.name, None) or next(iter(endpoints.values()))
    if len(calls) > 1:
        rec.extra["per_model"] = {c.name: c.log.to_dict() for c in calls}
    return rec


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # Sample the processes doing the inference (this one, or a server's tree) during the case.
    calls = item.stash.get(CALLS, [])
    run = item.config.stash[SESSION]
    pids = {pid for pid in (c.backend.process() for c in calls) if pid is not None}
    window = run.monitor(pids).window() if pids and run.settings.monitor_interval > 0 else None
    try:
        yield
    finally:
        if window is not None:
            item.stash[RESOURCES] = window.stop().to_dict()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Build the record before the report exists, so the report (and JUnit XML, and xdist)
    # carries it in user_properties.
    callspec = getattr(item, "callspec", None)
    is_case = callspec is not None and isinstance(callspec.params.get("case"), Case)
    failed_setup = call.when == "setup" and call.excinfo is not None and \
        not call.excinfo.errisinstance(pytest.skip.Exception)
    if is_case and (call.when == "call" or failed_setup):
        rec = _build_record(item, call)
        item.user_properties.extend(junit_properties(rec))
        item.user_properties.append((RECORD_KEY, rec.to_json()))
    yield


class Controller:
    """Registered on the controller (or a plain run) only: collects records, writes, reports."""

    def __init__(self, config: pytest.Config, run: RunSession) -> None:
        self.config = config
        self.run = run
        self.rows: list[Any] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # A record rides on the call report, or on the setup report when setup failed.
        if report.when == "teardown" or (report.when == "setup" and not report.failed):
            return
        payload = next((v for k, v in report.user_properties if k == RECORD_KEY), None)
        if payload is not None:
            self.run.add(json.loads(str(payload)))

    def pytest_sessionfinish(self) -> None:
        workers = getattr(self.config.option, "numprocesses", None)
        self.rows = self.run.finish(workers=workers if isinstance(workers, int) else 0)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        terminalreporter.write_sep("=", f"harness scoreboard: run {self.run.run_id}")
        terminalreporter.write_line(scoreboard(self.rows))
        terminalreporter.write_line(f"reports: {self.run.run_dir}")
