"""pytest entry point (``pytest11: npu``): wires pytest hooks to the harness; no logic here.

Start-up cost matters (every pytest run in an environment with pytest-npu installed loads this
module), so only light modules are imported here; numpy, onnx, onnxruntime and the compiler load
on the first ``npu.run``.
"""

from __future__ import annotations

import pytest

from . import markers, xdist
from .session import NpuRecord, NpuRunner, RunnerOptions, TestContext

# baselines, history and exports join through the hooks in hookspec.py
pytest_plugins = ["pytest_npu.harness.plugin_baseline", "pytest_npu.harness.plugin_history"]

RUNNER = pytest.StashKey[NpuRunner]()
RECORDS = pytest.StashKey[list]()
ITEM_RECORDS = pytest.StashKey[list]()
ITEM_FAILURE = pytest.StashKey[object]()   # a callable rendering the failure text, or None
DEFAULT_TARGET = "u55-256"


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def pytest_addoption(parser):
    group = parser.getgroup("npu", "NPU testing (pytest-npu)")
    group.addoption("--npu-target", action="append", default=[], metavar="NAME|PATH",
                    help="NPU target to run on (built-in name or .toml path); repeatable: tests using the "
                         "npu_target fixture run once per target. ini: npu_targets. Default: u55-256")
    group.addoption("--npu-no-budgets", action="store_true", default=False,
                    help="measure and report, but do not fail tests that break an npu_budget")
    group.addoption("--npu-json", metavar="PATH", default=None,
                    help="write every record (metrics, budgets, layers, provenance) as JSON. ini: npu_json")
    group.addoption("--npu-markdown", metavar="PATH", default=None,
                    help="append a Markdown summary to PATH (e.g. $GITHUB_STEP_SUMMARY, which collects every "
                         "step's summary). ini: npu_markdown")
    group.addoption("--npu-layers-csv", metavar="PATH", default=None,
                    help="write every test x target's per-layer figures as one CSV (Vela-like columns, "
                         "exact figures, units in the headers). ini: npu_layers_csv")
    group.addoption("--npu-batch", type=_positive_int, default=None, metavar="N",
                    help="emulate at most N inferences at a time (each owns an emulated DRAM image). "
                         "ini: npu_batch. Default: 64")
    group.addoption("--npu-host-runs", type=int, default=None, metavar="N",
                    help="time the float model on the host CPU N times for the speedup column (0: off). "
                         "ini: npu_host_runs. Default: 5")
    group.addoption("--npu-vela", action="store_true", default=False,
                    help="also record Arm Vela's estimate (vela_cycles, vela_sram_kib, ...) for .tflite models on "
                         "targets that name a Vela accelerator (needs the [vela] extra); automatic for a test "
                         "whose npu_budget names a vela_ metric")
    parser.addini("npu_targets", "NPU targets to run on (names or .toml paths)", type="args", default=[])
    parser.addini("npu_json", "path of the JSON run record", default="")
    parser.addini("npu_markdown", "path the Markdown summary is appended to", default="")
    parser.addini("npu_layers_csv", "path of the per-layer CSV", default="")
    parser.addini("npu_batch", "emulate at most this many inferences at a time", default="64")
    parser.addini("npu_host_runs", "host timing repetitions (0 disables)", default="5")


def pytest_addhooks(pluginmanager):
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config):
    config.addinivalue_line("markers", "npu_budget(**limits): fail the test when a modelled NPU figure breaks "
                            "its limit (keys: " + ", ".join(markers.METRICS) + "; compare={...} for baselines)")
    config.addinivalue_line("markers", "npu_target(*names): run the test once per named NPU target "
                            "(beats --npu-target and the npu_targets ini)")
    options = RunnerOptions(
        targets=_configured_targets(config),
        batch=config.getoption("npu_batch") or _ini_int(config, "npu_batch", 1),
        host_runs=(config.getoption("npu_host_runs") if config.getoption("npu_host_runs") is not None
                   else _ini_int(config, "npu_host_runs", 0)),
        enforce=not config.getoption("npu_no_budgets"), vela=config.getoption("npu_vela"))
    config.stash[RUNNER] = NpuRunner(options)
    config.stash[RECORDS] = []
    config.pluginmanager.register(_RecordCollector(config.stash[RECORDS]), "npu-records")


def _configured_targets(config) -> list[str]:
    return list(dict.fromkeys(config.getoption("npu_target") or config.getini("npu_targets")
                              or [DEFAULT_TARGET]))


def _ini_int(config, name: str, minimum: int) -> int:
    text = config.getini(name)
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise pytest.UsageError(f"ini option {name} = {text!r}: expected an integer >= {minimum}")
    return value


def pytest_report_header(config):
    options = config.stash[RUNNER].options
    return (f"npu: targets {', '.join(options.targets)}; budgets "
            f"{'enforced' if options.enforce else 'reported only (--npu-no-budgets)'}; batch {options.batch}")


def pytest_generate_tests(metafunc):
    """Validate budgets at collection (a typo is a collection error) and parametrise per target."""
    from ..errors import BudgetUsageError

    definition = metafunc.definition
    runner = metafunc.config.stash[RUNNER]
    try:
        markers.budget_for(definition)
        names = markers.targets_for(definition, runner.options.targets)
    except BudgetUsageError as exc:
        raise pytest.Collector.CollectError(f"BudgetUsageError: {exc}") from None
    marked = definition.get_closest_marker("npu_target") is not None
    if "npu_target" not in metafunc.fixturenames:
        if not (marked and "npu" in metafunc.fixturenames):
            return
        metafunc.fixturenames.append("npu_target")
    metafunc.parametrize("npu_target", names, indirect=True, ids=[_target_id(name) for name in names])


def _target_id(name: str) -> str:
    from pathlib import Path

    return Path(name).stem if name.endswith(".toml") else name


def pytest_collection_modifyitems(session, config, items):
    """A mistyped --npu-target / npu_targets entry is one usage error, not one error per test."""
    from ..errors import TargetError

    if not any({"npu", "npu_target"} & set(getattr(item, "fixturenames", ())) for item in items):
        return
    runner = config.stash[RUNNER]
    for name in runner.options.targets:
        try:
            runner.target(name)
        except TargetError as exc:
            source = "--npu-target" if config.getoption("npu_target") else "ini npu_targets"
            raise pytest.UsageError(f"{source}: {exc}") from None


@pytest.fixture(scope="session")
def npu(pytestconfig) -> NpuRunner:
    """The NPU runner: ``npu.compile(model, target=None)``, ``npu.run(model, inputs, reference=...)``."""
    return pytestconfig.stash[RUNNER]


@pytest.fixture(scope="session")
def npu_target(request, npu):
    """The Target this test runs on (parametrised from npu_target markers / --npu-target / ini)."""
    name = getattr(request, "param", None) or npu.default_target
    return npu.target(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    runner = item.config.stash[RUNNER]
    context = TestContext(item=item, target=_param_target(item), budget=markers.budget_for(item),
                          enforce_per_run=runner.options.enforce)
    runner.context = context
    try:
        outcome = yield
        passed = True
    except BaseException:
        passed = False
        raise
    finally:
        runner.context = None
        records, render = runner.finish(context, item.ihook.pytest_npu_check, passed)
        _publish(item, records, render)
        if passed and render is not None and runner.options.enforce:
            from .verdict import NpuBudgetExceeded

            raise NpuBudgetExceeded(render(), [b for r in records for b in r.breaches]) from None
    return outcome


def _param_target(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("npu_target") if callspec is not None else None


def _publish(item, records: list[NpuRecord], render) -> None:
    item.stash[ITEM_RECORDS] = records
    item.stash[ITEM_FAILURE] = render
    for record in records:
        for key, value in record.metrics.items():
            item.user_properties.append((f"npu.{record.target}.{key}", _property(value)))
        for key, value in record.budgets.items():
            item.user_properties.append((f"npu.{record.target}.{key}.budget", _property(value)))
        for key in ("host_ms", "speedup"):
            if record.host.get(key) is not None:
                item.user_properties.append((f"npu.{record.target}.{key}", _property(record.host[key])))


def _property(value):
    import math

    return value if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "setup" and call.excinfo is not None and _is_npu_error(call.excinfo.value) \
            and not item.config.getoption("fulltrace"):
        # e.g. the npu_target fixture cannot load a marker's target: the message says it all
        report.longrepr = f"{type(call.excinfo.value).__name__}: {call.excinfo.value}"
    if call.when != "call":
        return report
    records = item.stash.get(ITEM_RECORDS, [])
    xdist.attach(report, records)
    from .verdict import NpuBudgetExceeded

    if call.excinfo is not None and isinstance(call.excinfo.value, NpuBudgetExceeded):
        report.longrepr = _failure_text(item, call.excinfo.value, records)
    elif call.excinfo is not None and _is_npu_error(call.excinfo.value) and not item.config.getoption("fulltrace"):
        report.longrepr = _user_frames_only(item, call.excinfo)
    elif report.failed and item.stash.get(ITEM_FAILURE, None) is not None:
        report.sections.append(("npu budget", item.stash[ITEM_FAILURE]()))
    return report


def _is_npu_error(exc) -> bool:
    from ..errors import NpuError

    return isinstance(exc, NpuError)


def _user_frames_only(item, excinfo):
    """An NpuError names the input at fault; the frames inside pytest-npu add nothing for the user
    (``--fulltrace`` keeps them). Show the test's own frames and the message."""
    import os

    import pytest_npu

    package = os.path.dirname(pytest_npu.__file__) + os.sep

    def user_frames(info):
        frames = info.traceback.cut(path=item.path)
        mine = frames.filter(lambda entry: not str(entry.path).startswith(package))
        return mine if len(mine) else frames

    style = item.config.getoption("tbstyle", "auto")
    return excinfo.getrepr(funcargs=True, style="long" if style == "auto" else style, tbfilter=user_frames,
                           showlocals=item.config.getoption("showlocals", False), truncate_locals=True)


def _failure_text(item, exc, records) -> str:
    """The breach table, Hypothesis' falsifying example (if any) and how to reproduce."""
    import shlex

    parts = [exc.full_text()]
    notes = _without_own_explanation(list(getattr(exc, "__notes__", None) or []))
    if notes:
        parts.append("\n".join(notes))
        target = records[0].target if records else item.config.stash[RUNNER].default_target
        seed = item.config.getoption("hypothesis_seed", None) or getattr(
            getattr(item, "obj", None), "_hypothesis_internal_use_generated_seed", None)
        command = f"pytest {shlex.quote(item.nodeid)} --npu-target={target}"
        parts.append(f"reproduce: {command}" + (f" --hypothesis-seed={seed}" if seed is not None else ""))
    return "\n\n".join(parts)


def _without_own_explanation(notes: list[str]) -> list[str]:
    """Hypothesis' explain phase lists lines "only run by failing test cases"; the budget check's own
    raise is always among them, which tells the user nothing: drop the block if it lists only ours."""
    import os

    if "Explanation:" not in notes:
        return notes
    start = notes.index("Explanation:")
    end = start + 1
    while end < len(notes) and notes[end].startswith(" "):
        end += 1
    paths = [note.strip() for note in notes[start + 1:end] if note.strip().startswith(os.sep)]
    here = os.path.dirname(__file__)
    if paths and all(path.startswith(here) for path in paths):
        return notes[:start] + notes[end:]
    return notes


class _RecordCollector:
    """Receives every call report (a worker's too, replayed by xdist on the controller)."""

    def __init__(self, records: list[NpuRecord]):
        self.records = records

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            outcome = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            for record in xdist.extract(report):
                record.outcome = outcome
                self.records.append(record)


def pytest_sessionfinish(session):
    config = session.config
    if xdist.is_worker(config):
        return
    records = config.stash[RECORDS]
    options = config.stash[RUNNER].options
    json_path = config.getoption("npu_json") or config.getini("npu_json")
    markdown_path = config.getoption("npu_markdown") or config.getini("npu_markdown")
    from . import report

    written = []
    if json_path:
        report.write_json(json_path, records, options.targets, options.enforce)
        written.append(json_path)
    if markdown_path:
        report.write_markdown(markdown_path, records, options.enforce)
        written.append(markdown_path)
    layers_csv = config.getoption("npu_layers_csv") or config.getini("npu_layers_csv")
    if layers_csv:
        report.write_layers_csv(layers_csv, records, options.targets)
        written.append(layers_csv)
    config.stash[WRITTEN] = written
    config.hook.pytest_npu_session_finish(session=session, records=records)


WRITTEN = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, config):
    if xdist.is_worker(config):
        return
    records = config.stash.get(RECORDS, [])
    if not records:
        return
    from . import report

    terminalreporter.write_sep("-", "npu summary")
    for line in report.summary_table(records, width=config.get_terminal_writer().fullwidth).splitlines():
        terminalreporter.write_line(line)
    for path in config.stash.get(WRITTEN, []):
        terminalreporter.write_line(f"npu: wrote {path}")
