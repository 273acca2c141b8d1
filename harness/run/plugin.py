"""The pytest plugin: options, model parametrization, fixtures, and the record of each case.

Thin by design (like pytest-xdist and pytest's junitxml): each process that runs cases keeps a
RunSession on config.stash (models, backends, monitors); each case's record is built once
(harness/core/record.py build_record) and attached to its report's user_properties; the Controller
(harness/run/controller.py), registered on the controller only, collects them, writes the store and
the reports once, and prints the scoreboard.

Inert until used: a session that collects no harness case reads no registry, loads no model library
and writes no reports folder. The harness starts (`start`) when a benchmark calls `parametrize_cases`,
a test asks for a harness fixture, a record arrives from an xdist worker, or a harness option is
given on the command line or in the ini file. Suites register as plugins (harness/suites/unit.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.record import RECORD_KEY, TYPED_OUTCOME_FIELDS, CaseRecord, Outcome, junit_properties
from harness.core.settings import add_options, given, resolve
from harness.core.transcript import TranscriptBuilder  # light: harness.core.record imports it already
from harness.report import hooks
from harness.suites import unit
from harness.suites.base import Item, Score
from harness.suites.unit import Suite

# What a session that never uses the harness need not load: the run's machinery is imported where
# it is first needed (start, the fixtures, the record), so an unrelated pytest run stays about as
# fast as one without the plugin.
if TYPE_CHECKING:
    from harness.models.call import ModelCall
    from harness.models.registry import ModelSpec
    from harness.monitor.cases import CaseWindows
    from harness.run.controller import Controller
    from harness.run.session import RunSession
    from harness.run.shard import Shard

SESSION: pytest.StashKey[RunSession] = pytest.StashKey()
CONTROLLER: pytest.StashKey[Controller] = pytest.StashKey()
OUTCOME = pytest.StashKey[Outcome]()
CALLS: pytest.StashKey[list[ModelCall]] = pytest.StashKey()
RESOURCES = pytest.StashKey[dict[str, Any]]()
WINDOWS: pytest.StashKey[CaseWindows] = pytest.StashKey()
TRANSCRIPT = pytest.StashKey[TranscriptBuilder]()
RUN_ID = pytest.StashKey[str]()  # the run id handed to xdist workers before the harness starts
SHARD: pytest.StashKey[Shard | None] = pytest.StashKey()  # set by start(): no shard before the harness is used
ITEMS = pytest.StashKey[str]()  # the items fingerprint of the whole run (harness/run/shard.py)
CURRENT = pytest.StashKey[pytest.Item]()  # the item being set up, run or torn down in this process
OPTIONS = pytest.StashKey[dict[str, Any]]()  # each suite's options, by suite name, for the fixture


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
    tags: tuple[tuple[str, str], ...] = ()  # the suite's item tags (Suite.tags), onto the record

    @property
    def label(self) -> str:
        """The model column of the reports: `small+large` for a pair."""
        return self.model.name if self.large is None else f"{self.model.name}+{self.large.name}"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    add_options(parser)
    for suite in unit.entry_point_suites():  # each adds its own prefixed options as it registers
        unit.register(pluginmanager, suite)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    # A conftest.py or -p module with `harness_suites = [...]` registers its suites.
    for suite in unit.declared_in(plugin):
        unit.register(manager, suite)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "suite(name): the benchmark suite a test module runs")
    suites = unit.registered(config.pluginmanager).values()
    if given(config) or any(given(config, s.options, s.option_prefix) for s in suites if s.options):
        start(config)  # a harness option: a bad value or registry stops the run now (exit 4)
    elif not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Idle(config), "harness-idle")


class _Idle:
    """The plugin's only part on a controller before the harness starts: it hands workers a run id,
    and starts the harness when the first record arrives from one."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        from harness.run.controller import WORKER_RUN_ID
        from harness.run.session import new_run_id

        if RUN_ID not in self.config.stash:
            # The run the environment names (HARNESS_RUN_ID or HARNESS_RESUME, as every shard of one
            # run does), so the workers' records and the controller started later share it.
            try:
                settings = resolve(self.config)
            except pytest.UsageError:  # a bad value: start() says which when the harness starts
                settings = None
            named = settings.resume or settings.run_id if settings is not None else None
            self.config.stash[RUN_ID] = named or new_run_id()
        node.workerinput[WORKER_RUN_ID] = self.config.stash[RUN_ID]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if CONTROLLER not in self.config.stash and any(k == RECORD_KEY for k, _ in report.user_properties):
            start(self.config)
            self.config.stash[CONTROLLER].pytest_runtest_logreport(report)  # registered too late for this one


def start(config: pytest.Config) -> RunSession:
    """The harness for this process, started on first use: settings, registry, models, and on the
    controller the Controller that writes the run."""
    if SESSION in config.stash:
        return config.stash[SESSION]
    from harness.models.registry import RegistryError
    from harness.run.controller import WORKER_ANSWERED, WORKER_RUN_ID, Controller
    from harness.run.selection import select_by_expressions
    from harness.run.session import RunSession, new_run_id
    from harness.run.shard import resolve_shard
    from harness.suites import task, taskfile

    settings = resolve(config)
    if settings.task:  # task files are suites too (harness/suites/taskfile.py)
        try:
            for path in taskfile.task_files(settings.task, config.invocation_params.dir):
                unit.register(config.pluginmanager, task.suite(path))
        except ValueError as exc:  # the message names the file, the key and what it takes
            raise pytest.UsageError(str(exc)) from None
    suites = unit.registered(config.pluginmanager)
    suite_settings = {k: v for s in suites.values() for k, v in s.settings(s.values(config)).items()}
    workerinput = getattr(config, "workerinput", None)
    try:
        # --shard I/N, or the scheduler's index (harness/run/shard.py); every shard names the one run.
        shard = config.stash[SHARD] = resolve_shard(settings.shard, settings.shard_count)
        if shard is not None and not (settings.run_id or settings.resume):
            raise ValueError(f"shard {shard.label} (from {shard.source}) needs the run id all shards share: "
                             "give --run-id RUN (HARNESS_RUN_ID)")
        if workerinput is None:  # a plain run, or the controller of an xdist run
            run_id = settings.resume or settings.run_id or config.stash.get(RUN_ID, None) or new_run_id()
            session = RunSession(settings, config.rootpath, run_id)
            controller = Controller(config, settings, run_id, session.models, session.pair, shard,
                                    suites={name: {"tags": list(s.tags), "reports": list(s.reports)}
                                            for name, s in suites.items()},
                                    suite_settings=suite_settings)
            session.answered = controller.answered
            config.stash[CONTROLLER] = controller
            config.pluginmanager.register(controller, "harness-controller")
            hooks.register_builtin(config.pluginmanager.register)
            for name in sorted({r for s in suites.values() for r in s.reports}):
                hooks.register_report(config.pluginmanager.register, name)
        else:  # an xdist worker: the run id and the answered cases come from the controller
            session = RunSession(settings, config.rootpath, str(workerinput[WORKER_RUN_ID]),
                                 frozenset(workerinput.get(WORKER_ANSWERED, ())))
    except (RegistryError, OSError, ValueError) as exc:  # a bad registry, or --resume of no run
        raise pytest.UsageError(str(exc)) from None  # pytest exits with 4, the message names it
    idle = config.pluginmanager.get_plugin("harness-idle")
    if idle is not None:
        config.pluginmanager.unregister(idle)
    if settings.models is None:  # -k/-m naming a model reach every registry model (harness/run/selection.py)
        try:
            chosen = select_by_expressions(session.registry, config.option.keyword, config.option.markexpr)
        except SyntaxError:
            chosen = None  # pytest reports the bad expression itself
        if chosen is not None:
            session.models, session.unrunnable = chosen.models, chosen.unrunnable
    config.stash[SESSION] = session
    markers = {m for spec in session.registry.values() for m in spec.markers} | set(suites)
    for marker in sorted(markers):
        config.addinivalue_line("markers", f"{marker}: harness case selection")
    return session


@pytest.hookimpl(trylast=True)  # after -k/-m: the fingerprint covers the cases the run selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A session that did not start the harness (no harness case collected, no harness option) is
    # left whole, whatever shard index its scheduler sets.
    if SESSION not in config.stash:
        return
    shard = config.stash.get(SHARD, None)
    if shard is not None:
        _keep_shard(config, items, shard)
    # --resume: a case the earlier attempt answered is not asked again; its record still counts.
    run = config.stash[SESSION]
    for item in items:
        if item.nodeid in run.answered:
            item.add_marker(pytest.mark.skip(reason=f"already answered in run {run.run_id}"))
    if run.settings.decide is not None:
        _plan_decision(config, items)


def _plan_decision(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--decide: A and B's cases in a seeded random order, nothing else (harness/run/decide.py)."""
    from harness.run import decide
    run = config.stash[SESSION]
    pair = decide.variants(run.settings)
    if pair is None:
        return
    kept, dropped, plan = decide.plan_cases(items, _case_about, pair, run.settings.seed)
    if not plan:
        raise pytest.UsageError(f"--decide {','.join(run.settings.decide or ())}: no item has cases of both "
                                "variants (a variant is a model name, or strategy:model)")
    items[:] = kept
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    decide.write_json(_run_dir(config) / decide.PLAN_FILE, {"suites": plan})
    if CONTROLLER in config.stash:  # a plain run: the controller may count resumed records now
        config.stash[CONTROLLER].decider_ready()


def _case_about(item: pytest.Item) -> tuple[str, str, str, str] | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    return (case.suite, case.item.id, case.strategy, case.label) if isinstance(case, Case) else None


def _run_dir(config: pytest.Config) -> Path:
    from harness.core import locations
    run = config.stash[SESSION]
    return locations.report_dir(run.settings.report_dir, config.rootpath) / run.run_id


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the item's fixtures are made: the harness's fixtures act on it (_current).
    item.config.stash[CURRENT] = item
    # --decide: a case of a suite already decided is skipped before any fixture loads its model.
    run = item.config.stash.get(SESSION, None)
    if run is None or run.settings.decide is None:
        return
    from harness.run import decide
    about = _case_about(item)
    reason = decide.decided_reason(_run_dir(item.config), about[0]) if about else None
    if reason is not None:
        pytest.skip(reason)


def _keep_shard(config: pytest.Config, items: list[pytest.Item], shard: Shard) -> None:
    """Deselect the cases of other shards, after fingerprinting every case of the run."""
    from harness.run.shard import items_fingerprint

    cases = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        if isinstance(case, Case):
            cases.append((item.nodeid, case.item.input, case.item.reference))
    fingerprint = config.stash[ITEMS] = items_fingerprint(cases)
    if CONTROLLER in config.stash:  # a plain run: this process is the controller
        config.stash[CONTROLLER].items_fingerprint = fingerprint
    kept = [item for item in items if shard.holds(item.nodeid)]
    dropped = [item for item in items if not shard.holds(item.nodeid)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
        from harness.run.controller import WORKER_BACKENDS, WORKER_ITEMS

        config.workeroutput[WORKER_BACKENDS] = json.dumps(loaded, default=str)
        if ITEMS in config.stash:
            config.workeroutput[WORKER_ITEMS] = config.stash[ITEMS]


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        config.stash[SESSION].close()


def parametrize_cases(metafunc: pytest.Metafunc, suite: str | Suite, items: Sequence[Item] | None = None,
                      pair_strategies: Sequence[str] = (), strategies: Sequence[str] = ("single",)) -> None:
    """Parametrize a benchmark test over (model x item); ids read `model-item`.

    `suite` is a registered Suite (or its name); without `items`, its loader reads them with its
    options and the run's --samples and --seed. Each case carries the suite's item tags.

    Each single-model strategy other than "single" (such as "agent") adds cases `strategy-model-item`.

    With --small-model and --large-model, each of `pair_strategies` adds cases
    `strategy-small-large-item`, and both models also run alone on the same items.
    """
    metafunc.parametrize("case", case_params(metafunc.config, suite, items, pair_strategies, strategies))


def case_params(config: pytest.Config, suite: str | Suite, items: Sequence[Item] | None = None,
                pair_strategies: Sequence[str] = (), strategies: Sequence[str] = ("single",)) -> list[Any]:
    """The `case` parameters of parametrize_cases, for a test that runs several suites (task files)."""
    session = start(config)
    found = suite if isinstance(suite, Suite) else unit.registered(config.pluginmanager).get(suite)
    name = suite.name if isinstance(suite, Suite) else suite
    if items is None:
        if found is None:
            raise pytest.UsageError(f"parametrize_cases: no suite {name!r} is registered, and no items were given")
        from harness.store import read_tasks  # a data option naming a mongodb:// store reads it

        try:
            items = found.items(config, session.settings.samples, session.settings.seed, tasks=read_tasks)
        except ValueError as exc:  # bad data or a bad task file: the message names the file and the key
            raise pytest.UsageError(f"suite {name}: {exc}") from None
    tagged = found.item_tags if found is not None else (lambda item: {})
    models = list(session.models)
    pair = session.pair
    if pair_strategies and pair is not None:
        models += [m for m in pair if m not in models]
    if not models:
        reasons = "; ".join(f"{n}: {r}" for n, r in session.unavailable_reasons().items())
        raise pytest.UsageError(f"no model selected to run here ({reasons}); choose with --models")
    tags = {item.id: tuple(sorted(tagged(item).items())) for item in items}
    cases = [(f"{model.name}-{item.id}" if strategy == "single" else f"{strategy}-{model.name}-{item.id}",
              Case(name, model, item, strategy, tags=tags[item.id]))
             for strategy in strategies for model in models for item in items]
    if pair_strategies and pair is not None:
        small, large = pair
        cases += [(f"{strategy}-{small.name}-{large.name}-{item.id}",
                   Case(name, small, item, strategy, large, tags=tags[item.id]))
                  for strategy in pair_strategies for item in items]
    params = []
    for case_id, case in cases:
        markers = {*case.model.markers, *(case.large.markers if case.large else ()), name}
        marks = [getattr(pytest.mark, m) for m in sorted(markers)]
        if case.model.name in session.unrunnable:  # selected by -k/-m, but it cannot run here
            marks.append(pytest.mark.skip(reason=f"{case.model.name}: {session.unrunnable[case.model.name]}"))
        params.append(pytest.param(case, id=case_id, marks=marks))
    return params


@pytest.fixture(scope="session")
def harness(pytestconfig: pytest.Config) -> RunSession:
    return start(pytestconfig)


def _current(config: pytest.Config) -> pytest.Item:
    """The test item this process is running: pytest runs one at a time, and pytest_runtest_setup
    names it before making its fixtures. The fixtures below find their case's item here rather
    than through `request`, and `record` and `upcoming`, which act on the running case when
    called, are made once a session: each function-scoped fixture, and each that asks for
    `request`, costs pytest tens of microseconds a case (bench/overhead.py)."""
    item = config.stash.get(CURRENT, None)
    if item is None:
        pytest.fail("the harness's fixtures act on the test item being run; none is", pytrace=False)
    return item


@pytest.fixture
def options(pytestconfig: pytest.Config, case: Case) -> Any:
    """The options of the case's suite (its Options dataclass, resolved from --<prefix>-* flags)."""
    known = pytestconfig.stash.setdefault(OPTIONS, {})
    if case.suite not in known:  # one suite per name (unit.register), its options resolved once
        found = unit.registered(pytestconfig.pluginmanager).get(case.suite)
        if found is None:
            pytest.fail(f"the options fixture needs a registered suite; {case.suite!r} is not one", pytrace=False)
        known[case.suite] = found.values(pytestconfig)
    return known[case.suite]


@pytest.fixture
def llm(pytestconfig: pytest.Config, case: Case, harness: RunSession) -> ModelCall:
    """The case's model, behind the call wrapper that times and counts every call."""
    return _track(_current(pytestconfig), harness.model_call(case.model))


@pytest.fixture
def large_llm(pytestconfig: pytest.Config, case: Case, harness: RunSession) -> ModelCall:
    """The large model of a pair-strategy case (--large-model)."""
    if case.large is None:
        pytest.fail("large_llm is only for pair-strategy cases (see parametrize_cases)", pytrace=False)
    return _track(_current(pytestconfig), harness.model_call(case.large))


def _track(item: pytest.Item, call: ModelCall) -> ModelCall:
    """Count the call's usage in the case; a model first asked for while the case runs (the
    lazily loaded large model of a pair) is sampled from then on. A model retired after crashing
    again and again (backends/hosted.py) skips its remaining cases, with the reason."""
    if call.backend.retired is not None:
        pytest.skip(call.backend.retired)
    item.stash.setdefault(CALLS, []).append(call)
    call.transcript = item.stash.setdefault(TRANSCRIPT, TranscriptBuilder())  # one per case
    windows = item.stash.get(WINDOWS, None)
    if windows is not None:
        windows.add(call.name, call.backend.process(), call.backend.process_children)
    return call


@pytest.fixture(scope="session")
def upcoming(pytestconfig: pytest.Config) -> Callable[[], list[tuple[str, Any]]]:
    """(node id, case) of the cases of the running test and model that this process runs after
    this one, computed when asked: the look-ahead of batched scoring (harness/strategies/batched.py)."""
    from harness.run.upcoming import same_kind_ahead

    return lambda: same_kind_ahead(_current(pytestconfig))


@pytest.fixture(scope="session")
def record(pytestconfig: pytest.Config, harness: RunSession) -> Callable[..., None]:
    """record(prediction, score, mode=..., status=None, **details): the running case's measured outcome.

    `status="invalid_output"` marks an answer the suite could not read (scored as wrong);
    `status="error"` needs `error=<the reason>`. The details named in record.TYPED_OUTCOME_FIELDS
    (output, tool_calls, turns, stopped, tries, settled_by_small, isolation, confidence,
    confidence_source) become typed fields of the record; any other keyword goes to its `extra`.
    """

    def _record(prediction: str | None, score: Score, mode: str = "", status: str | None = None,
                error: str | None = None, **details: Any) -> None:
        if status not in (None, "ok", "wrong", "invalid_output", "error"):
            raise ValueError(f"record(status={status!r}): a test may set ok, wrong, invalid_output or error")
        if status == "error" and not error:
            raise ValueError("record(status='error') needs error=<the reason>")
        typed = {k: details.pop(k) for k in TYPED_OUTCOME_FIELDS if k in details}
        item = _current(pytestconfig)
        item.stash[OUTCOME] = Outcome(prediction, score.scores, score.correct, mode, status, error, typed, details)
        if harness.settings.fail_on_wrong and not score.correct:
            pytest.fail(f"wrong answer: predicted {prediction!r}, expected "
                        f"{item.callspec.params['case'].item.reference!r}", pytrace=False)  # type: ignore[attr-defined]

    return _record


def _build_record(item: pytest.Item, call: pytest.CallInfo[None]) -> CaseRecord:
    from harness.run.case_record import CaseTrace, case_record

    trace = CaseTrace(item.stash.get(OUTCOME, None), item.stash.get(CALLS, []), item.stash.get(RESOURCES, {}),
                      item.stash.get(TRANSCRIPT, None))
    return case_record(item.callspec.params["case"], item.config.stash[SESSION].run_id,  # type: ignore[attr-defined]
                       item.nodeid, call, trace)


# New-style wrappers (wrapper=True): pluggy runs them without the old style's result object.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # Sample the processes doing the inference (this one, or a server's tree) during the case.
    run = item.config.stash.get(SESSION, None)
    if run is None or run.settings.monitor_interval <= 0:
        return (yield)
    from harness.monitor.cases import CaseWindows

    windows = item.stash[WINDOWS] = CaseWindows(run.monitor)
    for call in item.stash.get(CALLS, []):
        windows.add(call.name, call.backend.process(), call.backend.process_children)
    try:
        return (yield)
    finally:
        del item.stash[WINDOWS]  # a model asked for after the call is not sampled
        if windows.windows:
            item.stash[RESOURCES] = windows.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
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
        # What the record was built from goes, as pytest lets go of an item's fixtures after it:
        # every item lives to the session's end, and the garbage collector's full passes, which
        # grow with what is alive, were a tenth of the harness's time per case.
        for key in (OUTCOME, CALLS, RESOURCES, TRANSCRIPT):
            _drop(item.stash, key)
    return (yield)


def _drop(stash: pytest.Stash, key: pytest.StashKey[Any]) -> None:
    if key in stash:
        del stash[key]
