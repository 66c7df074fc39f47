"""The metric vocabulary and the ``npu_budget`` / ``npu_target`` markers: parsing, stacking, errors.

A budget is code (it lives in the test), so a typo must stop collection with a suggestion rather than
silently never firing. Stacked markers (module ``pytestmark``, class, function) combine key by key and
the tightest limit wins: a function cannot loosen what its module promised.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from ..errors import BudgetUsageError


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    help: str
    lo: float | None = None     # smallest meaningful budget value
    hi: float | None = None     # largest meaningful budget value

    @property
    def relation(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def worse(self, a: float, b: float) -> float:
        """The worse of two measurements (NaN, i.e. "could not measure", is worst of all)."""
        if math.isnan(a) or math.isnan(b):
            return math.nan
        return min(a, b) if self.higher_is_better else max(a, b)

    def tighter(self, a: float, b: float) -> float:
        return max(a, b) if self.higher_is_better else min(a, b)

    def breaks(self, measured: float, limit: float) -> bool:
        if math.isnan(measured):
            return True
        return measured < limit if self.higher_is_better else measured > limit


_COST = 0.0
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("latency_ms", "ms", False, "modelled NPU latency per inference", lo=_COST),
    Metric("cycles", "cycles", False, "NPU clock cycles per inference (makespan)", lo=_COST),
    Metric("energy_mj", "mJ", False, "modelled energy per inference (dynamic + static)", lo=_COST),
    Metric("mse", "", False, "mean squared error of the outputs vs the reference", lo=_COST),
    Metric("max_abs_err", "", False, "largest absolute output error vs the reference", lo=_COST),
    Metric("sqnr_db", "dB", True, "signal-to-quantisation-noise ratio vs the reference (floor)"),
    Metric("cosine", "", True, "mean per-sample cosine similarity vs the reference (floor)", lo=-1.0, hi=1.0),
    Metric("top1", "", True, "top-1 accuracy against labels, 0..1 (floor)", lo=0.0, hi=1.0),
    Metric("top1_drop", "", False, "reference top-1 minus NPU top-1 against labels, 0..1", lo=-1.0, hi=1.0),
    Metric("sram_kib", "KiB", False, "peak on-chip SRAM in use", lo=_COST),
    Metric("dram_kib", "KiB", False, "DRAM traffic per inference (read + write)", lo=_COST),
    Metric("model_kib", "KiB", False, "size of the quantised model (constants image or ONNX bytes)", lo=_COST),
    Metric("macs", "MACs", False, "multiply-accumulates per inference", lo=_COST),
    # Arm Vela's estimate of the same .tflite model on the target's Vela accelerator (peers.vela):
    # a second opinion a budget can hold either estimator to
    Metric("vela_cycles", "cycles", False, "Vela's cycles per inference", lo=_COST),
    Metric("vela_latency_ms", "ms", False, "Vela's latency per inference", lo=_COST),
    Metric("vela_sram_kib", "KiB", False, "Vela's SRAM used", lo=_COST),
    Metric("vela_dram_kib", "KiB", False, "Vela's off-chip traffic per inference (read + write)", lo=_COST),
)}
VELA_PREFIX = "vela_"

# Reported beside the budgets, never gated: host wall time depends on the machine running the tests.
REPORT_ONLY = ("host_ms", "speedup")

COMPARE_KEY = "compare"   # npu_budget(compare={"latency_ms": "2%"}): tolerances for baseline plugins


@dataclass(frozen=True)
class Budget:
    """The limits that apply to one test after stacking, plus pass-through baseline tolerances."""

    limits: dict[str, float] = field(default_factory=dict)
    tolerances: dict[str, object] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.limits or self.tolerances)


def suggest(word: str, choices) -> str:
    """' Did you mean 'x'?' (or '') using difflib, so a typo names its fix."""
    by_lower = {str(choice).lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_budget_kwargs(kwargs: dict, where: str) -> Budget:
    """Validate one marker's keyword arguments; ``where`` names the test for the error message."""
    limits: dict[str, float] = {}
    tolerances: dict[str, object] = {}
    for key, value in kwargs.items():
        if key == COMPARE_KEY:
            tolerances = _parse_tolerances(value, where)
            continue
        metric = METRICS.get(key)
        if metric is None:
            raise BudgetUsageError(
                f"{where}: npu_budget has no key {key!r}.{suggest(key, [*METRICS, COMPARE_KEY])} "
                f"Known keys: {', '.join(METRICS)}, {COMPARE_KEY}={{metric: tolerance}}.")
        if not _is_number(value) or not math.isfinite(value):
            raise BudgetUsageError(
                f"{where}: npu_budget({key}={value!r}) must be a finite number "
                f"({metric.help}{', in ' + metric.unit if metric.unit else ''}), e.g. {key}=1.5.")
        if (metric.lo is not None and value < metric.lo) or (metric.hi is not None and value > metric.hi):
            bounds = f"[{metric.lo if metric.lo is not None else '-inf'}, {metric.hi if metric.hi is not None else 'inf'}]"
            raise BudgetUsageError(f"{where}: npu_budget({key}={value!r}) is outside {bounds}: {metric.help}.")
        limits[key] = float(value)
    return Budget(limits, tolerances)


def _parse_tolerances(value, where: str) -> dict[str, object]:
    """Check ``compare=`` in the shared tolerance language (``tolerances.py``) at collection; keep it as
    written, since records carry it as plain JSON (to xdist's controller and into reports)."""
    from .tolerances import Tolerances

    if not isinstance(value, dict):
        raise BudgetUsageError(
            f"{where}: npu_budget(compare=...) must be a dict metric -> tolerance, "
            f"e.g. compare={{'latency_ms': '2%', 'mse': 1e-4, 'cycles': 'off'}}; got {type(value).__name__}.")
    Tolerances.from_mapping(value, where=f"{where}: npu_budget(compare=...)")
    return dict(value)


def budget_for(node, where: str | None = None) -> Budget:
    """Stack every npu_budget marker on ``node`` (function, class, module): the tightest limit wins."""
    where = where or node.nodeid
    limits: dict[str, float] = {}
    tolerances: dict[str, object] = {}
    # iter_markers yields the closest first; for tolerances the closest (most specific) one wins.
    for mark in node.iter_markers("npu_budget"):
        if mark.args:
            raise BudgetUsageError(
                f"{where}: npu_budget takes keyword arguments only (got positional {mark.args!r}); "
                f"write e.g. @pytest.mark.npu_budget(latency_ms=5).")
        budget = parse_budget_kwargs(mark.kwargs, where)
        for key, value in budget.limits.items():
            limits[key] = METRICS[key].tighter(limits[key], value) if key in limits else value
        for key, tolerance in budget.tolerances.items():
            tolerances.setdefault(key, tolerance)
    return Budget(limits, tolerances)


def targets_for(node, configured: list[str], where: str | None = None) -> list[str]:
    """Targets to run on: the closest npu_target marker beats the option/ini list (``configured``)."""
    where = where or node.nodeid
    mark = node.get_closest_marker("npu_target")
    if mark is None:
        return list(configured)
    if mark.kwargs:
        raise BudgetUsageError(
            f"{where}: npu_target takes target names or paths only (got keywords {sorted(mark.kwargs)}); "
            f"write e.g. @pytest.mark.npu_target('u55-256', 'edge-3core').")
    names = [str(arg) if hasattr(arg, "__fspath__") else arg for arg in mark.args]
    bad = [name for name in names if not isinstance(name, str) or not name]
    if not names or bad:
        raise BudgetUsageError(
            f"{where}: npu_target needs one or more target names or .toml paths (got {mark.args!r}); "
            f"see `pytest-npu targets` for the built-ins.")
    return list(dict.fromkeys(names))
