"""The pytest plugin: options, model parametrization, fixtures, and the record of each case.

Thin by design (like pytest-xdist and pytest's junitxml): each process that runs cases keeps a
RunSession on config.stash (models, backends, monitors); each case's record is built once
(harness/record.py build_record) and attached to its report's user_properties; the Controller
(harness/controller.py), registered on the controller only, collects them, writes the store and
the reports once, and prints the scoreboard.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from harness.backends.base import BackendError, BackendTimeout
from harness.call import ModelCall
from harness.case_monitor import CaseWindows
from harness.controller import WORKER_ANSWERED, WORKER_BACKENDS, WORKER_RUN_ID, Controller
from harness.endpoints import endpoint_of
from harness.record import (
    RECORD_KEY,
    TYPED_OUTCOME_FIELDS,
    CaseInfo,
    CaseRecord,
    ModelUsage,
    Outcome,
    build_record,
    junit_properties,
)
from harness.registry import ModelSpec, RegistryError
from harness.report import hooks
from harness.selection import select_by_expressions
from harness.session import RunSession, new_run_id
from harness.settings import add_options, resolve
from harness.strategies.batched import apportioned_wall
from harness.suites.base import Item, Score, describe
from harness.transcript import TranscriptBuilder
from harness.upcoming import same_kind_ahead

SESSION = pytest.StashKey[RunSession]()
CONTROLLER = pytest.StashKey[Controller]()
OUTCOME = pytest.StashKey[Outcome]()
CALLS = pytest.StashKey[list[ModelCall]]()
RESOURCES = pytest.StashKey[dict[str, Any]]()
WINDOWS = pytest.StashKey[CaseWindows]()
TRANSCRIPT = pytest.StashKey[TranscriptBuilder]()
# Each suite's name is also a marker.
SUITES = ("mmlu", "extraction", "vue", "mbpp", "humaneval", "gsm8k", "chat_memory")


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


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    settings = resolve(config)
    workerinput = getattr(config, "workerinput", None)
    try:
        if workerinput is None:  # a plain run, or the controller of an xdist run
            run_id = settings.resume or settings.run_id or new_run_id()
            session = RunSession(settings, config.rootpath, run_id)
            controller = Controller(config, settings, run_id, session.models, session.pair)
            session.answered = controller.answered
            config.stash[CONTROLLER] = controller
            config.pluginmanager.register(controller, "harness-controller")
            hooks.register_builtin(config.pluginmanager.register)
        else:  # an xdist worker: the run id and the answered cases come from the controller
            session = RunSession(settings, config.rootpath, str(workerinput[WORKER_RUN_ID]),
                                 frozenset(workerinput.get(WORKER_ANSWERED, ())))
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    # What this process loaded travels to the controller: directly in a plain run, through
    # pytest-xdist's workeroutput from a worker (the controller's sessionfinish runs after this).
    config = session.config
    if SESSION not in config.stash:
        return
    loaded = config.stash[SESSION].loaded()
    if CONTROLLER in config.stash:
        config.stash[CONTROLLER].add_backends(loaded)
    elif hasattr(config, "workeroutput"):
        config.workeroutput[WORKER_BACKENDS] = json.dumps(loaded, default=str)


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
    return _track(request, harness.model_call(case.model))


@pytest.fixture
def large_llm(request: pytest.FixtureRequest, case: Case, harness: RunSession) -> ModelCall:
    """The large model of a pair-strategy case (--large-model)."""
    if case.large is None:
        pytest.fail("large_llm is only for pair-strategy cases (see parametrize_cases)", pytrace=False)
    return _track(request, harness.model_call(case.large))


def _track(request: pytest.FixtureRequest, call: ModelCall) -> ModelCall:
    """Count the call's usage in the case; a model first asked for while the case runs (the
    lazily loaded large model of a pair) is sampled from then on."""
    request.node.stash.setdefault(CALLS, []).append(call)
    call.transcript = request.node.stash.setdefault(TRANSCRIPT, TranscriptBuilder())  # one per case
    windows = request.node.stash.get(WINDOWS, None)
    if windows is not None:
        windows.add(call.name, call.backend.process())
    return call


@pytest.fixture
def upcoming(request: pytest.FixtureRequest) -> Callable[[], list[tuple[str, Any]]]:
    """(node id, case) of the cases of this test and model that this process runs after this one,
    computed when asked: the look-ahead of batched scoring (harness/strategies/batched.py)."""
    return lambda: same_kind_ahead(request.node)


@pytest.fixture
def record(request: pytest.FixtureRequest, harness: RunSession) -> Callable[..., None]:
    """record(prediction, score, mode=..., status=None, **details): the case's measured outcome.

    `status="invalid_output"` marks an answer the suite could not read (scored as wrong);
    `status="error"` needs `error=<the reason>`. The details named in record.TYPED_OUTCOME_FIELDS
    (output, tool_calls, turns, stopped, tries, settled_by_small, isolation) become typed fields
    of the record; any other keyword goes to its `extra`.
    """

    def _record(prediction: str | None, score: Score, mode: str = "", status: str | None = None,
                error: str | None = None, **details: Any) -> None:
        if status not in (None, "ok", "wrong", "invalid_output", "error"):
            raise ValueError(f"record(status={status!r}): a test may set ok, wrong, invalid_output or error")
        if status == "error" and not error:
            raise ValueError("record(status='error') needs error=<the reason>")
        typed = {k: details.pop(k) for k in TYPED_OUTCOME_FIELDS if k in details}
        request.node.stash[OUTCOME] = Outcome(prediction, score.scores, score.correct, mode, status, error,
                                              typed, details)
        if harness.settings.fail_on_wrong and not score.correct:
            pytest.fail(f"wrong answer: predicted {prediction!r}, expected "
                        f"{request.node.callspec.params['case'].item.reference!r}", pytrace=False)

    return _record


def _usage_by_model(calls: list[ModelCall]) -> dict[str, ModelUsage]:
    """Each model's share of the case, in the order first used (two wrappers of one model add up)."""
    models: dict[str, ModelUsage] = {}
    for call in calls:
        usage = call.usage()
        if call.name in models:
            known = models[call.name]
            for name in ("calls", "cache_hits", "retries", "prompt_tokens", "completion_tokens", "model_s", "cost"):
                setattr(known, name, getattr(known, name) + getattr(usage, name))
        else:
            models[call.name] = usage
    return models


def _build_record(item: pytest.Item, call: pytest.CallInfo[None]) -> CaseRecord:
    case: Case = item.callspec.params["case"]  # type: ignore[attr-defined]
    run = item.config.stash[SESSION]
    backend = case.model.backend if case.large is None else f"{case.model.backend}+{case.large.backend}"
    info = CaseInfo(run.run_id, item.nodeid, case.suite, case.item.id, case.label, backend, case.strategy,
                    case.item.reference, describe(case.item))
    failure = None
    outcome = item.stash.get(OUTCOME, None)
    exc = call.excinfo.value if call.excinfo is not None else None
    if outcome is None and exc is not None:
        failure = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    wall_s = call.duration
    if outcome is not None and isinstance(outcome.extra.get("batch"), dict):
        # Batched scoring: this case's own time plus its share of the batch call, not the batch's.
        wall_s = apportioned_wall(call.duration, outcome.extra["batch"], item.nodeid)
    calls = item.stash.get(CALLS, [])
    rec = build_record(info, outcome, models=_usage_by_model(calls), wall_s=wall_s, failure=failure,
                       timeout=isinstance(exc, BackendTimeout), resources=item.stash.get(RESOURCES, {}))
    builder = item.stash.get(TRANSCRIPT, None)
    if builder is not None:
        rec.transcript = builder.build(rec.output if rec.output is not None else rec.prediction)
    endpoints = {c.name: e for c in calls if (e := endpoint_of(c.backend))}  # options.base_urls
    if endpoints:
        rec.extra["endpoint"] = endpoints.pop(case.model.name, None) or next(iter(endpoints.values()))
    return rec


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # Sample the processes doing the inference (this one, or a server's tree) during the case.
    run = item.config.stash[SESSION]
    windows = CaseWindows(run.monitor) if run.settings.monitor_interval > 0 else None
    if windows is not None:
        item.stash[WINDOWS] = windows
        for call in item.stash.get(CALLS, []):
            windows.add(call.name, call.backend.process())
    try:
        yield
    finally:
        if windows is not None:
            del item.stash[WINDOWS]  # a model asked for after the call is not sampled
            if windows.windows:
                item.stash[RESOURCES] = windows.stop()


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
