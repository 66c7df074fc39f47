"""Budget verdicts: which limits a record breaks, and the failure message a person can act on.

Kept free of numpy/onnx imports at module level: plugin start-up must stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Breach:
    """One failed check: a budget row, or a row another plugin adds through ``pytest_npu_check``.

    ``limit`` is the budget (None when the check has no absolute limit, e.g. a baseline regression);
    ``baseline``/``delta`` are filled by baseline checks; ``message`` is a short human note;
    ``context`` a note several rows share (e.g. what changed in the provenance), printed once.
    """

    metric: str
    limit: float | None
    measured: float
    baseline: float | None = None
    delta: float | None = None
    message: str = ""
    context: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Breach:
        return cls(data["metric"], data.get("limit"), data["measured"], data.get("baseline"), data.get("delta"),
                   data.get("message") or "", data.get("context") or "")


class NpuBudgetExceeded(AssertionError):
    """Raised from the test call when a record breaks a budget (an AssertionError so Hypothesis shrinks)."""

    def __init__(self, message: str, breaches: list[Breach], render=None):
        super().__init__(message)
        self.breaches = breaches
        self._render = render

    def full_text(self) -> str:
        """The whole failure text. Rendered late (at report time) so Hypothesis' shrinking and explain
        phases do not pay for, or point at, the per-layer diagnosis."""
        return self._render() if self._render is not None else str(self)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value) -> str:
    """Numbers for people: 4 significant digits, ints as ints, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) >= 1000):
        return f"{int(value):,}"
    if math.isnan(value):
        return "not measured"
    return f"{value:.4g}"


def margin(measured: float, limit: float | None) -> str:
    """How far past the limit: absolute and relative, signed so that '+' always means 'worse'."""
    if limit is None or not _finite(measured):
        return "-"
    over = measured - limit
    text = f"{over:+.4g}"
    if limit:
        text += f" ({over / abs(limit):+.1%})"
    return text


def check_budgets(metrics: dict[str, float], limits: dict[str, float]) -> list[Breach]:
    """Budget rows a record breaks. A budgeted metric that was never measured is a breach, not a pass."""
    from .markers import METRICS

    breaches = []
    for key, limit in limits.items():
        metric = METRICS[key]
        measured = metrics.get(key, math.nan)
        if metric.breaks(measured, limit):
            note = "" if _finite(measured) else _NOT_MEASURED.get(key, "not measured by npu.run")
            breaches.append(Breach(key, limit, measured, message=note))
    return breaches


_ACCURACY_NOTE = "not measured: call npu.run(..., reference=...) so outputs can be compared"
_NOT_MEASURED = {
    "mse": _ACCURACY_NOTE, "max_abs_err": _ACCURACY_NOTE, "sqnr_db": _ACCURACY_NOTE, "cosine": _ACCURACY_NOTE,
    "top1": "not measured: call npu.run(..., labels=...)",
    "top1_drop": "not measured: call npu.run(..., reference=..., labels=...)",
}


def breach_table(breaches: list[Breach]) -> str:
    """metric | budget | measured | margin (+ baseline | delta | note when any row has them)."""
    from tabulate import tabulate

    from .markers import METRICS

    with_baseline = any(b.baseline is not None or b.delta is not None for b in breaches)
    with_note = any(b.message for b in breaches)
    headers = ["metric", "budget", "measured", "margin"]
    headers += ["baseline", "delta"] if with_baseline else []
    headers += ["note"] if with_note else []
    rows = []
    for b in breaches:
        metric = METRICS.get(b.metric)
        budget = "-" if b.limit is None else f"{metric.relation if metric else '<='} {fmt(b.limit)}"
        row = [b.metric, budget, fmt(b.measured), _signed_margin(b, metric)]
        row += [fmt(b.baseline), fmt(b.delta)] if with_baseline else []
        row += [b.message] if with_note else []
        rows.append(row)
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _signed_margin(breach: Breach, metric) -> str:
    if metric is not None and metric.higher_is_better and breach.limit is not None and _finite(breach.measured):
        # for floors "worse" is below the limit: show the shortfall as a positive overshoot
        return margin(-breach.measured, -breach.limit)
    return margin(breach.measured, breach.limit)


_COST_ORDER = {  # which per-layer column (compiler's layer rows) explains a breach of this metric
    "latency_ms": "cycles", "cycles": "cycles", "energy_mj": "energy_mj", "sram_kib": "sram_peak",
    "dram_kib": "dram_bytes", "macs": "macs",
}
_ADDITIVE = {"cycles", "energy_mj", "dram_bytes", "macs"}   # columns whose shares of the total mean something
_ACCURACY = {"mse", "max_abs_err", "sqnr_db", "cosine", "top1", "top1_drop"}


def costly_layers(layers: list[dict], metric: str, count: int = 3) -> str:
    """The ``count`` layers that cost the most of what ``metric`` measures, as a small table."""
    from tabulate import tabulate

    column = _COST_ORDER.get(metric, "cycles")
    if not layers or not any(column in row for row in layers):
        column = "cycles"
    ranked = sorted(layers, key=lambda row: -float(row.get(column) or 0))[:count]
    if not ranked:
        return "(the compiler reported no per-layer rows)"
    total = sum(float(row.get(column) or 0) for row in layers) or 1.0
    share = column in _ADDITIVE
    rows = [[row.get("layer", "?"), row.get("op", "?"), row.get("where", "npu"), fmt(row.get(column))]
            + ([f"{float(row.get(column) or 0) / total:.0%}"] if share else []) for row in ranked]
    return tabulate(rows, headers=["layer", "op", "where", column] + (["share"] if share else []),
                    tablefmt="simple", disable_numparse=True)


def failure_message(record, breaches: list[Breach], accuracy_rows: list[dict] | None = None,
                    accuracy_note: str = "") -> str:
    """The whole failure text: what broke, by how much, and where in the network to look."""
    what = "NPU budget exceeded" if any(b.limit is not None for b in breaches) else "NPU check failed"
    lines = [f"{what}: {record.nodeid} on target {record.target} "
             f"({len(breaches)} check{'s' if len(breaches) != 1 else ''} failed, {record.runs} run(s))",
             "", breach_table(breaches)]
    lines += [context for context in dict.fromkeys(b.context for b in breaches) if context]
    cost_metrics = [b.metric for b in breaches if b.metric in _COST_ORDER]
    if cost_metrics:
        column = _COST_ORDER[cost_metrics[0]]
        lines += ["", f"most expensive layers by {column} (from the compiled program's trace):",
                  costly_layers(record.layers, cost_metrics[0])]
    if any(b.metric in _ACCURACY for b in breaches):
        lines += ["", accuracy_section(accuracy_rows, accuracy_note)]
    return "\n".join(lines)


def accuracy_section(rows: list[dict] | None, note: str = "") -> str:
    """Layers losing the most accuracy: lowest per-layer SQNR against the float reference."""
    from tabulate import tabulate

    if not rows:
        return "per-layer accuracy: " + (note or "not available (no float reference model for this run)")
    table = tabulate([[r["layer"], r.get("op", "?"), fmt(r["sqnr_db"]), fmt(r.get("mse"))] for r in rows],
                     headers=["layer", "op", "sqnr_db", "mse"], tablefmt="simple", disable_numparse=True)
    header = f"layers with the lowest SQNR vs the float reference ({note}):" if note else \
        "layers with the lowest SQNR vs the float reference:"
    return header + "\n" + table
