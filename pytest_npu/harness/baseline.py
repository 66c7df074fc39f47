"""Committed baselines: one JSON file per test module, compared on every run.

A baseline holds only what is deterministic (the modelled figures and the inputs that determine
them: model hash, target hash, compile options, compiler version), never dates, hosts or commits,
so a ``--npu-update-baseline`` diff in a pull request shows exactly the numbers that moved.
Tolerances are code (options, ini, markers), not data, as in pytest-regressions.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BaselineError, BudgetUsageError

FORMAT = "pytest-npu-baseline"
VERSION = 1
SIGNIFICANT_DIGITS = 12          # enough for every modelled figure, hides last-bit host noise
BASELINE_DIRNAME = "__npu__"

#: Higher-is-better figures a record may carry beyond the budget vocabulary (``markers.METRICS``).
EXTRA_HIGHER_IS_BETTER = frozenset({"snr_db", "top5", "accuracy", "efficiency", "speedup"})
#: Accuracy figures depend on the host's float reference (onnxruntime kernels may differ in the last
#: bits across CPUs), so they get a looser default than the emulator's exact integer figures.
ACCURACY_METRICS = frozenset({"mse", "max_abs_err", "sqnr_db", "snr_db", "cosine", "top1", "top5",
                              "top1_drop", "accuracy"})
FLOAT_DEFAULT_RELATIVE = 1e-9
ACCURACY_DEFAULT_RELATIVE = 1e-6


def higher_is_better(metric: str) -> bool:
    """Direction of "better": sqnr_db, cosine, top1 rise when things improve; costs and errors fall."""
    from .markers import METRICS

    known = METRICS.get(metric)
    return known.higher_is_better if known is not None else metric in EXTRA_HIGHER_IS_BETTER


# --------------------------------------------------------------------------------------------------
# tolerances


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move in the bad direction before it counts as a regression."""

    relative: float = 0.0        # fraction of |baseline| (0.02 == "2%")
    absolute: float = 0.0

    def allowed(self, baseline: float) -> float:
        return max(self.relative * abs(baseline), self.absolute)

    def __str__(self) -> str:
        if self.relative and not self.absolute:
            return f"{self.relative * 100:g}%"
        if self.absolute and not self.relative:
            return f"{self.absolute:g}"
        if not self.relative and not self.absolute:
            return "exact"
        return f"max({self.relative * 100:g}%, {self.absolute:g})"


#: Counts: exact by default whatever type they arrive in (a record may carry cycles as a float).
INTEGRAL_METRICS = frozenset({"cycles", "macs", "host_cycles", "roofline_cycles"})


def is_count(metric: str) -> bool:
    return metric in INTEGRAL_METRICS or metric.endswith("_bytes")


def default_tolerance(metric: str, value: float | None = None) -> Tolerance:
    """Counts (cycles, bytes, MACs) must match exactly; other figures within rounding noise."""
    integral = isinstance(value, int) and not isinstance(value, bool)
    if integral or is_count(metric):
        return Tolerance()
    if metric in ACCURACY_METRICS:
        return Tolerance(relative=ACCURACY_DEFAULT_RELATIVE)
    return Tolerance(relative=FLOAT_DEFAULT_RELATIVE)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_tolerance(value: Any, *, where: str) -> Tolerance:
    """``"2%"`` is relative, a plain number (or numeric string) is absolute. ``where`` names the source."""
    if isinstance(value, bool):
        raise BudgetUsageError(f"{where}: tolerance {value!r} is a bool; use a number or 'N%' such as '2%'")
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise BudgetUsageError(f"{where}: tolerance {value!r} must be a finite number >= 0")
        return Tolerance(absolute=number)
    text = str(value).strip()
    match = re.fullmatch(rf"({_NUMBER})\s*(%?)", text)
    if not match or float(match.group(1)) < 0:
        raise BudgetUsageError(
            f"{where}: cannot read tolerance {value!r}; write a percentage such as '2%' "
            f"or an absolute amount such as '0.5' or '1e-4'")
    number = float(match.group(1))
    return Tolerance(relative=number / 100.0) if match.group(2) else Tolerance(absolute=number)


def parse_compare_fail(expression: str, *, where: str = "--npu-compare-fail") -> tuple[str, Tolerance]:
    """Parse ``METRIC:N%`` or ``METRIC:ABS`` (the pytest-benchmark ``--benchmark-compare-fail`` grammar)."""
    metric, sep, amount = str(expression).partition(":")
    metric = metric.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", metric) or not amount.strip():
        raise BudgetUsageError(
            f"{where}: {expression!r} is not METRIC:N% or METRIC:ABS (e.g. 'latency_ms:2%' or 'mse:1e-4')")
    return metric, parse_tolerance(amount, where=f"{where} {expression!r}")


def tolerances_from(expressions: Iterable[str], *, where: str) -> dict[str, Tolerance]:
    return dict(parse_compare_fail(text, where=where) for text in expressions)


# --------------------------------------------------------------------------------------------------
# comparison


@dataclass(frozen=True)
class Comparison:
    """One metric of one test x target against its baseline."""

    metric: str
    measured: float | None
    baseline: float | None
    tolerance: Tolerance
    status: str                  # "ok" | "regressed" | "improved" | "new-metric" | "missing-metric"

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.baseline is None:
            return None
        return self.measured - self.baseline

    @property
    def delta_text(self) -> str:
        delta = self.delta
        if delta is None:
            return "n/a"
        if self.baseline:
            return f"{delta:+.6g} ({delta / abs(self.baseline) * 100:+.3g}%)"
        return f"{delta:+.6g}"


def compare_metric(metric: str, measured: float, baseline: float, tolerance: Tolerance) -> Comparison:
    """Classify a change by the metric's direction: worse beyond tolerance is a regression.

    NaN means "could not be measured": losing a figure is a regression, gaining one an improvement.
    """
    if math.isnan(measured) or math.isnan(baseline):
        status = "ok" if math.isnan(measured) and math.isnan(baseline) else \
            "regressed" if math.isnan(measured) else "improved"
        return Comparison(metric, measured, baseline, tolerance, status)
    worse_by = (baseline - measured) if higher_is_better(metric) else (measured - baseline)
    allowed = tolerance.allowed(baseline)
    if worse_by > allowed:
        status = "regressed"
    elif -worse_by > allowed:
        status = "improved"
    else:
        status = "ok"
    return Comparison(metric, measured, baseline, tolerance, status)


def compare_metrics(measured: Mapping[str, float], baseline: Mapping[str, float],
                    tolerances: Mapping[str, Tolerance] | None = None) -> list[Comparison]:
    """Compare every metric present on either side (sorted by name, so messages are stable)."""
    tolerances = tolerances or {}
    rows = []
    for metric in sorted(set(measured) | set(baseline)):
        now, then = measured.get(metric), baseline.get(metric)
        tolerance = tolerances.get(metric) or default_tolerance(metric, then if then is not None else now)
        if then is None:
            rows.append(Comparison(metric, now, None, tolerance, "new-metric"))
        elif now is None:
            rows.append(Comparison(metric, None, then, tolerance, "missing-metric"))
        else:
            rows.append(compare_metric(metric, now, then, tolerance))
    return rows


def provenance_changes(current: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for every provenance key that differs (``key: old -> new``)."""
    lines = []
    for key in sorted(set(current) | set(stored)):
        old, new = stored.get(key), current.get(key)
        if normalise(old) != normalise(new):
            lines.append(f"{key}: {_short(old)} -> {_short(new)}")
    return lines


def _short(value: Any) -> str:
    text = json.dumps(normalise(value), sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:12] + "…" + text[-6:]


# --------------------------------------------------------------------------------------------------
# the file format


def normalise(value: Any) -> Any:
    """Make a value JSON-stable: ints stay ints, floats get fixed significant digits, keys are strings."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return repr(number)          # JSON has no inf/nan; keep them readable and comparable
        return float(f"{number:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, Mapping):
        return {str(key): normalise(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(normalise(item) for item in value)
    return str(value)


def metric_value(value: Any) -> float:
    """A stored metric back as a number (``'inf'``/``'nan'`` were written as text)."""
    return float(value) if isinstance(value, str) else value


@dataclass
class BaselineFile:
    """The parsed content of one module's baseline file: ``tests[test][target] = entry``."""

    path: Path
    module: str
    tests: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: the edits of this session, replayed onto the file as it is on disk when saving, so two
    #: processes updating different tests of one module (CI shards) both keep their entries
    edits: list[tuple[str, str, str | None, dict | None]] = field(default_factory=list, repr=False)

    def entry(self, test: str, target: str) -> dict[str, Any] | None:
        return self.tests.get(test, {}).get(target)

    def set_entry(self, test: str, target: str, metrics: Mapping[str, Any],
                  provenance: Mapping[str, Any]) -> None:
        counts = {name: int(value) for name, value in metrics.items()
                  if is_count(name) and isinstance(value, float) and value.is_integer()}
        entry = {"metrics": normalise({**metrics, **counts}), "provenance": normalise(dict(provenance))}
        self._apply("set", test, target, entry)
        self.edits.append(("set", test, target, entry))

    def remove(self, test: str, target: str | None = None) -> None:
        self._apply("remove", test, target, None)
        self.edits.append(("remove", test, target, None))

    def _apply(self, kind: str, test: str, target: str | None, entry: dict | None) -> None:
        if kind == "set" and target is not None and entry is not None:
            self.tests.setdefault(test, {})[target] = entry
        elif target is None:
            self.tests.pop(test, None)
        else:
            targets = self.tests.get(test, {})
            targets.pop(target, None)
            if not targets:
                self.tests.pop(test, None)

    def dumps(self) -> str:
        document = {"format": FORMAT, "version": VERSION, "module": self.module, "tests": self.tests}
        return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def load_baseline(path: str | os.PathLike[str], module: str = "") -> BaselineFile:
    """Read one baseline file; a missing file is an empty baseline, a bad one a ``BaselineError``."""
    path = Path(path)
    if not path.exists():
        return BaselineFile(path, module)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(
            f"baseline file {path} is unreadable ({exc}); it was left untouched. Restore it from version "
            f"control (git checkout -- {path}) or delete it and re-record with --npu-update-baseline") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BaselineError(f"{path} is not a pytest-npu baseline (expected \"format\": \"{FORMAT}\"); "
                            f"it was left untouched. Move it away or point --npu-baseline-dir elsewhere")
    version = document.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BaselineError(
            f"baseline file {path} has format version {version!r} but this pytest-npu reads version "
            f"{VERSION}; upgrade pytest-npu (pip install -U pytest-npu) - the file was left untouched")
    tests = document.get("tests")
    if not isinstance(tests, dict) or not all(
            isinstance(targets, dict) and all(isinstance(entry, dict) and isinstance(entry.get("metrics"), dict)
                                              for entry in targets.values())
            for targets in tests.values()):
        raise BaselineError(f"baseline file {path} has a malformed \"tests\" section (expected "
                            f"test -> target -> {{metrics, provenance}}); it was left untouched")
    for test, targets in tests.items():
        for target, entry in targets.items():
            bad = [name for name, value in entry["metrics"].items()
                   if isinstance(value, bool) or not (isinstance(value, (int, float)) or value in _NON_FINITE)]
            if bad:
                raise BaselineError(f"baseline file {path}: {test} on {target} has non-numeric metric(s) "
                                    f"{', '.join(sorted(bad))}; it was left untouched. Fix or re-record them")
    return BaselineFile(path, str(document.get("module", module)), tests)


_NON_FINITE = ("inf", "-inf", "nan")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write via a temp file in the same directory + fsync + os.replace: readers see old or new, never half."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_name, path)
        except BaseException:
            if os.path.exists(temp_name):
                os.unlink(temp_name)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise BaselineError(f"cannot write {path}: {exc}; check the directory exists and is writable") from exc


def save_baseline(baseline: BaselineFile) -> bool:
    """Replay this session's edits onto the file as it is now, and write it if that changed anything.

    Under an exclusive lock on the directory, the file is re-read, so another process's entries
    written since we read it survive (last writer wins only per entry, never per file). An emptied
    file is deleted. Returns whether the file changed.
    """
    with _directory_lock(baseline.path.parent):
        current = load_baseline(baseline.path, baseline.module)
        for kind, test, target, entry in baseline.edits:
            current._apply(kind, test, target, entry)
        baseline.tests, baseline.edits = current.tests, []
        if not current.tests:
            if current.path.exists():
                current.path.unlink()
                return True
            return False
        text = current.dumps()
        if current.path.exists() and current.path.read_text(encoding="utf-8") == text:
            return False
        atomic_write_text(current.path, text)
        return True


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An advisory exclusive lock on the directory itself (no lock file to commit by mistake)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise BaselineError(f"cannot write baselines in {directory}: {exc}") from exc
    try:
        try:
            import fcntl
        except ImportError:                # Windows: no flock; controller-only writes still hold
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


# --------------------------------------------------------------------------------------------------
# naming: node id -> module file + test key


def split_nodeid(nodeid: str) -> tuple[str, str]:
    """``tests/t.py::TestA::test_b[x]`` -> (``tests/t.py``, ``TestA.test_b[x]``), syrupy-style names."""
    module, _, rest = nodeid.partition("::")
    if not rest:
        raise BaselineError(f"node id {nodeid!r} has no test part; baselines are kept per test function")
    # keep "::" inside parametrize ids intact: only split the part before the first "["
    head, bracket, params = rest.partition("[")
    return module, head.replace("::", ".") + bracket + params


def baseline_path(module: str, rootdir: str | os.PathLike[str],
                  baseline_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the baseline of test module ``module`` (a path relative to rootdir) lives.

    Default: ``<module dir>/__npu__/<module stem>.json``; with a baseline directory, the module's
    relative path is mirrored under it (``<dir>/tests/test_x.json``) so names never collide.
    """
    relative = Path(module)
    if baseline_dir is None:
        return Path(rootdir) / relative.parent / BASELINE_DIRNAME / (relative.stem + ".json")
    return Path(rootdir) / Path(baseline_dir) / relative.with_suffix(".json")


def module_of_baseline(path: Path, rootdir: str | os.PathLike[str],
                       baseline_dir: str | os.PathLike[str] | None = None) -> Path:
    """Inverse of ``baseline_path``: the test module a baseline file belongs to (for orphan detection)."""
    if baseline_dir is None:
        return path.parent.parent / (path.stem + ".py")
    relative = path.relative_to(Path(rootdir) / Path(baseline_dir))
    return Path(rootdir) / relative.with_suffix(".py")
