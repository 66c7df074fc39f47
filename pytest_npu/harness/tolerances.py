"""One tolerance language for every comparison of a figure with an earlier one.

``--npu-compare-fail`` (and ini ``npu_compare_fail``), the marker's ``npu_budget(compare={...})``,
``pytest-npu compare --fail`` and ``pytest-npu history --fail`` all read the same rules, resolve
them the same way and start from the same defaults, so a rule means one thing wherever it is written.

A rule is ``METRIC:AMOUNT`` on a command line or in the ini, ``{METRIC: AMOUNT}`` in the marker:

==========  =========================================  ===================================
AMOUNT      meaning                                    example
==========  =========================================  ===================================
``N%``      relative to the earlier value              ``latency_ms:2%``
number      absolute, in the metric's unit             ``mse:1e-4``, ``sqnr_db:0.5``
``exact``   no change at all (``0`` is the same)       ``energy_mj:exact``
``off``     shown, never a failure                     ``cycles:off``
==========  =========================================  ===================================

``METRIC`` is a figure name or ``*``: every figure that no rule of the same source names.
A tolerance bounds the change in the figure's bad direction (``sqnr_db``, ``cosine``, ``top1``
regress when they drop, everything else when it grows); a change beyond it the other way is an
improvement.

Sources stack per figure: the test's marker beats the command line, which beats the ini, which
beats the defaults; within one source a named rule beats ``*``. So ``--npu-compare-fail
latency_ms:2%`` loosens latency only and every other figure keeps its default, and
``pytest-npu compare A B --fail '*:off' --fail latency_ms:2%`` gates latency alone.

Defaults (:data:`DEFAULTS`, measured by ``benchmarks/float_drift.py``): figures computed from the
emulator's integer results (cycles, latency, energy, memory, MACs, model size, top-1 against
labels) are identical on every machine and compared exactly, at the 12 significant digits a
baseline file keeps. Figures computed against a float reference (mse, max_abs_err, sqnr_db, cosine)
inherit the last-bit noise of onnxruntime's float kernels, which differ between CPUs: measured at
up to 2.6e-5 relative between onnxruntime and onnx's numpy reference evaluator and 1.7e-6 between
two x86-64 CPUs, so they get 0.01 % (cosine, which sits next to 1: 0.001 %), still 9x below the
smallest real accuracy change measured (requantisation rounded twice instead of once: 0.087 % of
mse). ``top1_drop`` moves in steps of one sample, never moved in any measurement, and is exact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BudgetUsageError

#: Figures are compared at the precision baseline files keep: enough for every modelled figure,
#: and it hides the last-bit differences of float formatting.
SIGNIFICANT_DIGITS = 12
WILDCARD = "*"


def rounded(value: float) -> float:
    """``value`` at :data:`SIGNIFICANT_DIGITS` significant digits (non-finite values unchanged)."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


@dataclass(frozen=True)
class Tolerance:
    """How far a figure may move in its bad direction before it counts as a regression.

    ``gated=False`` is ``off``: the change is reported, never a failure.
    """

    relative: float = 0.0        # fraction of |earlier value| (0.02 == "2%")
    absolute: float = 0.0
    gated: bool = True

    def allowed(self, baseline: float) -> float:
        return max(self.relative * abs(baseline), self.absolute)

    @property
    def exact(self) -> bool:
        return self.gated and not self.relative and not self.absolute

    def __str__(self) -> str:
        if not self.gated:
            return "off"
        if self.exact:
            return "exact"
        if self.relative and not self.absolute:
            return f"{self.relative * 100:g}%"
        if self.absolute and not self.relative:
            return f"{self.absolute:g}"
        return f"max({self.relative * 100:g}%, {self.absolute:g})"


EXACT = Tolerance()
OFF = Tolerance(gated=False)


@dataclass(frozen=True)
class DefaultRule:
    """One row of the defaults table: which figures, their tolerance, and the measurement behind it."""

    figures: tuple[str, ...]
    tolerance: Tolerance
    why: str


#: The defaults, in the order the docs and ``--help`` state them. Figures not listed are exact.
DEFAULTS: tuple[DefaultRule, ...] = (
    DefaultRule(("mse", "max_abs_err", "sqnr_db"), Tolerance(relative=1e-4),
                "float reference: moved up to 2.6e-5 relative between float kernels, 1.7e-6 between CPUs"),
    DefaultRule(("cosine",), Tolerance(relative=1e-5),
                "float reference, next to 1: moved up to 1.2e-6 between float kernels, 5e-11 between CPUs"),
)
_DEFAULT_BY_FIGURE = {figure: rule.tolerance for rule in DEFAULTS for figure in rule.figures}


def default_tolerance(metric: str) -> Tolerance:
    """The default for ``metric``: exact unless :data:`DEFAULTS` says otherwise."""
    return _DEFAULT_BY_FIGURE.get(metric, EXACT)


def defaults_text() -> str:
    """The defaults in one sentence."""
    loose = "; ".join(f"{', '.join(rule.figures)} {rule.tolerance}" for rule in DEFAULTS)
    return (f"defaults: every figure exact, except {loose} (figures against a float reference, from the "
            f"drift measured between CPUs: docs/baselines.md#tolerances)")


def option_help(what: str) -> str:
    """The ``--help`` text of an option taking rules (argparse-escaped), stating language and defaults."""
    text = (f"{what}: METRIC:AMOUNT with AMOUNT N% (relative), a number (absolute), exact or off "
            f"(reported, never failing); METRIC may be * for every figure not named; repeatable. "
            f"{defaults_text()}")
    return text.replace("%", "%%")


# --------------------------------------------------------------------------------------------------
# figure names and directions

#: Higher-is-better figures a record may carry beyond the budget vocabulary (``markers.METRICS``).
EXTRA_HIGHER_IS_BETTER = frozenset({"snr_db", "top5", "accuracy", "efficiency", "speedup", "top1_agreement",
                                    "top1_reference"})


def higher_is_better(metric: str) -> bool:
    """Direction of "better": sqnr_db, cosine, top1 rise when things improve; costs and errors fall."""
    from .markers import METRICS

    known = METRICS.get(metric)
    return known.higher_is_better if known is not None else metric in EXTRA_HIGHER_IS_BETTER


def known_figures() -> set[str]:
    """The figures a record carries, hence the names a rule may use."""
    from .markers import METRICS

    return set(METRICS)


# --------------------------------------------------------------------------------------------------
# parsing

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WORDS = {"exact": EXACT, "off": OFF}


def parse_tolerance(value: Any, *, where: str) -> Tolerance:
    """An AMOUNT: ``"2%"`` relative, a number (or numeric string) absolute, ``"exact"`` or ``"off"``."""
    if isinstance(value, bool):
        raise BudgetUsageError(f"{where}: tolerance {value!r} is a bool; use 'N%', a number, 'exact' or 'off'")
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise BudgetUsageError(f"{where}: tolerance {value!r} must be a finite number >= 0")
        return Tolerance(absolute=number)
    text = str(value).strip()
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    match = re.fullmatch(rf"({_NUMBER})\s*(%?)", text)
    if not match or float(match.group(1)) < 0 or not math.isfinite(float(match.group(1))):
        raise BudgetUsageError(
            f"{where}: cannot read tolerance {value!r}; write a percentage such as '2%', an absolute "
            f"amount such as '0.5' or '1e-4', 'exact' or 'off'")
    number = float(match.group(1))
    return Tolerance(relative=number / 100.0) if match.group(2) else Tolerance(absolute=number)


def check_figure(metric: str, *, where: str) -> str:
    """``metric`` if it names a figure (or is ``*``); else a usage error with the closest name."""
    from .markers import suggest

    if metric == WILDCARD or metric in known_figures():
        return metric
    raise BudgetUsageError(f"{where}: no figure is called {metric!r}.{suggest(metric, sorted(known_figures()))} "
                           f"Figures: {', '.join(sorted(known_figures()))}, or * for all others.")


def parse_rule(expression: str, *, where: str) -> tuple[str, Tolerance]:
    """``METRIC:AMOUNT`` (e.g. ``latency_ms:2%``, ``mse:1e-4``, ``cycles:off``, ``*:exact``)."""
    metric, sep, amount = str(expression).partition(":")
    metric = metric.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|\*", metric) or not amount.strip():
        raise BudgetUsageError(
            f"{where}: {expression!r} is not METRIC:AMOUNT (e.g. 'latency_ms:2%', 'mse:1e-4', 'cycles:off')")
    check_figure(metric, where=f"{where} {expression!r}")
    return metric, parse_tolerance(amount, where=f"{where} {expression!r}")


# --------------------------------------------------------------------------------------------------
# the rules of a comparison


class Tolerances:
    """Rules by figure name in layers, lowest first: a rule of a later source beats an earlier one.

    ``get(metric)`` is the rule that applies (named, else ``*``, searching from the most specific
    source), or None; ``for_metric(metric)`` falls back to the default.
    """

    def __init__(self, layers: Sequence[Mapping[str, Tolerance]] = ()):
        self.layers: tuple[dict[str, Tolerance], ...] = tuple(dict(layer) for layer in layers if layer)

    @classmethod
    def parse(cls, expressions: Iterable[str], *, where: str) -> Tolerances:
        """One source of ``METRIC:AMOUNT`` rules (a later rule for the same figure wins)."""
        return cls([dict(parse_rule(text, where=where) for text in expressions)])

    @classmethod
    def from_mapping(cls, rules: Mapping[str, Any], *, where: str) -> Tolerances:
        """One source written as ``{METRIC: AMOUNT}`` (the marker's ``compare=``)."""
        return cls([{check_figure(str(metric), where=where):
                     parse_tolerance(amount, where=f"{where}: {{{metric!r}: {amount!r}}}")
                     for metric, amount in rules.items()}])

    def over(self, lower: Tolerances) -> Tolerances:
        """These rules stacked on top of ``lower`` (these win)."""
        return Tolerances(lower.layers + self.layers)

    def get(self, metric: str) -> Tolerance | None:
        for layer in reversed(self.layers):
            if metric in layer:
                return layer[metric]
            if WILDCARD in layer:
                return layer[WILDCARD]
        return None

    def for_metric(self, metric: str) -> Tolerance:
        return self.get(metric) or default_tolerance(metric)

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tolerances) and self.layers == other.layers

    def __repr__(self) -> str:
        return f"Tolerances({list(self.layers)!r})"


# --------------------------------------------------------------------------------------------------
# comparing


@dataclass(frozen=True)
class Comparison:
    """One figure against its earlier value."""

    metric: str
    measured: float | None
    baseline: float | None
    tolerance: Tolerance
    #: "ok" | "regressed" | "improved" | "changed" (moved, not gated) | "new-metric" | "missing-metric"
    status: str

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.baseline is None:
            return None
        return self.measured - self.baseline

    @property
    def delta_text(self) -> str:
        delta = self.delta
        if delta is None or math.isnan(delta):
            return "n/a"
        if self.baseline and math.isfinite(self.baseline):
            return f"{delta:+.6g} ({delta / abs(self.baseline) * 100:+.3g}%)"
        return f"{delta:+.6g}"


def compare_metric(metric: str, measured: float, baseline: float, tolerance: Tolerance) -> Comparison:
    """Classify a change by the metric's direction: worse beyond tolerance is a regression.

    Both sides are taken at 12 significant digits. NaN means "could not be measured": losing a
    figure is a regression, gaining one an improvement.
    """
    measured, baseline = rounded(measured), rounded(baseline)
    if math.isnan(measured) or math.isnan(baseline):
        status = "ok" if math.isnan(measured) and math.isnan(baseline) else \
            "regressed" if math.isnan(measured) else "improved"
    elif measured == baseline:
        status = "ok"
    else:
        worse_by = (baseline - measured) if higher_is_better(metric) else (measured - baseline)
        # from or to an infinite value (sqnr_db of an exact match) no finite tolerance covers the step
        allowed = tolerance.allowed(baseline) if math.isfinite(baseline) and math.isfinite(measured) else 0.0
        status = "regressed" if worse_by > allowed else "improved" if -worse_by > allowed else "ok"
    if not tolerance.gated and status != "ok":
        status = "changed"
    return Comparison(metric, measured, baseline, tolerance, status)


def compare_metrics(measured: Mapping[str, float], baseline: Mapping[str, float],
                    tolerances: Tolerances | None = None) -> list[Comparison]:
    """Compare every metric present on either side (sorted by name, so messages are stable)."""
    tolerances = tolerances or Tolerances()
    rows = []
    for metric in sorted(set(measured) | set(baseline)):
        now, then = measured.get(metric), baseline.get(metric)
        tolerance = tolerances.for_metric(metric)
        if then is None:
            rows.append(Comparison(metric, now, None, tolerance, "new-metric"))
        elif now is None:
            rows.append(Comparison(metric, None, then, tolerance, "missing-metric"))
        else:
            rows.append(compare_metric(metric, now, then, tolerance))
    return rows
