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
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BaselineError
from .tolerances import rounded

FORMAT = "pytest-npu-baseline"
VERSION = 1
BASELINE_DIRNAME = "__npu__"
#: Largest magnitude a stored figure may have: beyond anything float32 tensors can produce (the mse
#: of float32 outputs stays below 1e77), and small enough that deltas and ratios stay finite.
MAX_MAGNITUDE = 1e100
#: Figures that may be infinite: sqnr_db is +inf when the NPU matches the reference exactly.
MAY_BE_INFINITE = frozenset({"sqnr_db", "snr_db"})

#: Counts: stored as integers whatever type they arrive in (a record carries cycles as a float).
INTEGRAL_METRICS = frozenset({"cycles", "macs", "host_cycles", "roofline_cycles"})


def is_count(metric: str) -> bool:
    return metric in INTEGRAL_METRICS or metric.endswith("_bytes")


# --------------------------------------------------------------------------------------------------
# comparison (the tolerance language lives in tolerances.py)


#: a hash of the other provenance keys: named only when nothing else explains its change
DERIVED_PROVENANCE = frozenset({"cache_key"})


def provenance_changes(current: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every provenance key that differs (derived keys only when alone)."""
    changed = [key for key in sorted(set(current) | set(stored))
               if normalise(stored.get(key)) != normalise(current.get(key))]
    if any(key not in DERIVED_PROVENANCE for key in changed):
        changed = [key for key in changed if key not in DERIVED_PROVENANCE]
    return [f"{key}: {_short(stored.get(key))} -> {_short(current.get(key))}" for key in changed]


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
        return rounded(number)
    if isinstance(value, Mapping):
        return {str(key): normalise(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(normalise(item) for item in value)
    return str(value)


def metric_value(value: Any) -> float:
    """A stored metric back as a number (``'inf'``/``'-inf'`` are written as text)."""
    return float(value) if isinstance(value, str) else value


def figure_text(metric: str, value: Any) -> str:
    """A figure as the baseline file holds it: counts and integral figures as integers."""
    if value is None:
        return "-"
    stored = normalise(value)
    if isinstance(stored, float) and stored.is_integer() and (is_count(metric) or abs(stored) >= 1):
        return str(int(stored))
    return str(stored)


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
        # NaN is "could not be measured": not a figure to hold a later run to
        kept = {name: value for name, value in {**metrics, **counts}.items()
                if not (isinstance(value, float) and math.isnan(value))}
        entry = {"metrics": normalise(kept), "provenance": normalise(dict(provenance))}
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
            where = f"baseline file {path}: {test} on {target}"
            if not isinstance(entry.get("provenance", {}), dict):
                raise BaselineError(f"{where} has a provenance of type {type(entry['provenance']).__name__} "
                                    f"({entry['provenance']!r}); it must be an object of key -> value. The file "
                                    f"was left untouched: fix the entry or delete it and re-record it")
            for name, value in sorted(entry["metrics"].items()):
                problem = bad_figure(name, value)
                if problem:
                    raise BaselineError(f"{where}: metric {name} = {value!r} {problem}; the file was left "
                                        f"untouched: fix the entry or delete it and re-record it")
    return BaselineFile(path, str(document.get("module", module)), tests)


def bad_figure(name: str, value: Any) -> str:
    """Why a stored figure cannot be compared with ('' when it can)."""
    from .markers import METRICS

    if isinstance(value, str) and value in ("inf", "-inf"):
        return "" if name in MAY_BE_INFINITE else f"is infinite, which only {', '.join(sorted(MAY_BE_INFINITE))} can be"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number (NaN is never stored: a figure that could not be measured has no entry)"
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        return f"is outside the range any figure can have (|value| <= {MAX_MAGNITUDE:g})"
    if is_count(name) and not float(value).is_integer():
        return "is not a whole number, and it counts things"
    metric = METRICS.get(name)
    if metric is not None and ((metric.lo is not None and value < metric.lo)
                               or (metric.hi is not None and value > metric.hi)):
        low = "-inf" if metric.lo is None else f"{metric.lo:g}"
        high = "inf" if metric.hi is None else f"{metric.hi:g}"
        return f"is outside [{low}, {high}] ({metric.help})"
    return ""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write via a temp file in the same directory + fsync + os.replace: readers see old or new, never half.

    The file gets the mode a plain ``open(path, "w")`` would give it (an existing file's, else 0666
    less the umask), not the 0600 of the temporary file it is written through.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(handle, mode)
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


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` in one ``O_APPEND`` write (what GitHub's step summary file expects: several steps
    and tools append to it), separated from earlier content by a blank line; created per the umask."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if os.fstat(handle).st_size:
                text = "\n" + text
            data = text.encode("utf-8")
            while data:
                data = data[os.write(handle, data):]
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError as exc:
        raise BaselineError(f"cannot append to {path}: {exc}; check the directory exists and is writable") from exc


def _umask() -> int:
    mask = os.umask(0)          # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


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
