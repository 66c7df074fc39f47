"""Accuracy-aware search: the most compressed configuration that still meets the budget.

Tries pruning amounts x precisions (pruned candidates are fine-tuned by distillation from the
input model when ``train_data`` is given), measures each on ``eval_data``, and keeps the one with
the fewest weight bytes (then fewest MACs, then narrowest activations) that meets every budget.  A pruned-and-distilled torch
model is shared by all precisions of the same amount, so a grid costs one training per amount.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from pytest_npu.errors import CompressionError

from ._data import samples
from ._export import to_onnx
from ._stats import as_model_proto
from ._step import Step, choose, is_torch_module
from .distill import Distill
from .pipeline import PipelineResult, StepReport, _as_input, _Measurer, run_steps, shape_from_data
from .prune import Prune
from .quantize import PRECISIONS, Quantize

BUDGET_KEYS = ("top1_drop", "mse", "size_kib", "macs", "params")
DEFAULT_CANDIDATES: tuple[tuple[float, str | None], ...] = (
    (0.0, "int16"), (0.0, "int8"), (0.25, "int8"), (0.5, "int8"),
)


@dataclass
class SearchResult:
    best: PipelineResult
    candidate: dict[str, Any]            # {"prune": amount, "precision": ...} of the best
    tried: list[dict[str, Any]]          # one row per candidate: measurements, "meets", "why not"
    float_top1: float | None

    @property
    def model(self):
        return self.best.model

    def table(self, tablefmt: str = "github") -> str:
        from tabulate import tabulate

        return tabulate(self.tried, headers="keys", tablefmt=tablefmt, missingval="-", floatfmt="g", intfmt=",")


class _Given(Step):
    """A step whose result was already computed (shared between candidates of the same amount)."""

    def __init__(self, step: Step, result: Any, seconds: float):
        self.step, self.result, self.seconds = step, result, seconds
        self.kind = step.kind

    @property
    def name(self) -> str:
        return self.step.name

    def apply(self, model: Any) -> Any:
        return self.result


def _candidates(candidates: Any) -> list[tuple[float, str | None]]:
    result = []
    for item in DEFAULT_CANDIDATES if candidates is None else candidates:
        if isinstance(item, dict):
            unknown = set(item) - {"prune", "precision"}
            if unknown:
                raise CompressionError(f"search(candidates): unknown key(s) {sorted(unknown)} in {item}; a candidate "
                                       "is {'prune': amount, 'precision': 'int8' | 'int16' | 'a16w8' | None}")
            amount, precision = item.get("prune", 0.0), item.get("precision")
        else:
            try:
                amount, precision = item
            except (TypeError, ValueError):
                raise CompressionError(f"search(candidates): {item!r} is not (prune_amount, precision)") from None
        if precision not in (None, "float"):
            precision = choose(precision, PRECISIONS, "search(candidates) precision")
        result.append((float(amount), None if precision in (None, "float") else precision))
    if not result:
        raise CompressionError("search(candidates) is empty: give at least one (prune_amount, precision)")
    return result


def _violations(report: StepReport, budget: dict[str, float], float_top1: float | None) -> list[str]:
    why = []
    for key, limit in budget.items():
        if key == "top1_drop" and report.top1 is not None and float_top1 is not None:
            drop = float_top1 - report.top1
            if drop > limit + 1e-12:
                why.append(f"top-1 drop {100 * drop:.2f} pt > {100 * limit:.2f} pt")
        elif key == "mse" and report.mse is not None and report.mse > limit:
            why.append(f"MSE {report.mse:.3g} > {limit:.3g}")
        elif key == "size_kib" and report.size_kib > limit:
            why.append(f"{report.size_kib:.2f} KiB > {limit:g} KiB")
        elif key in ("macs", "params") and getattr(report, key) > limit:
            why.append(f"{getattr(report, key):,} {key} > {limit:,.0f}")
    return why


def _check_budget(budget: dict[str, float] | None, has_labels: bool) -> dict[str, float]:
    budget = {"top1_drop": 0.01} if budget is None else dict(budget)
    for key, value in budget.items():
        choose(key, BUDGET_KEYS, "search(budget) key")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise CompressionError(f"search(budget): {key}={value!r} must be a non-negative number")
    if "top1_drop" in budget and not has_labels:
        raise CompressionError("search(budget) has top1_drop but eval_data has no labels: pass eval_data=(x, y)")
    return budget


def search(model: Any, budget: dict[str, float] | None = None, candidates: Any = None, *, eval_data: Any = None,
           calibration: Any = None, train_data: Any = None, structured: bool = True, epochs: int = 6,
           input_shape: tuple[int, ...] | None = None, progress: bool = False) -> SearchResult:
    """Return the most compressed candidate meeting ``budget`` (default: top-1 drop <= 1 point).

    ``candidates``: ``(prune_amount, precision)`` pairs or dicts (precision None = stay float);
    default :data:`DEFAULT_CANDIDATES`.  ``budget`` keys: top1_drop (fraction), mse, size_kib, macs,
    params.  Raises CompressionError with the table of what was tried if nothing meets the budget.
    """
    if eval_data is None:
        raise CompressionError("search needs eval_data=(x, y) to measure each candidate against the budget")
    grid = _candidates(candidates)
    if any(amount > 0 for amount, _ in grid) and not is_torch_module(model):
        raise CompressionError("search: pruning candidates need a torch model; pass a torch.nn.Module or only "
                               "(0.0, precision) candidates for an ONNX model")
    train = samples(train_data, "search(train_data)") if train_data is not None else None
    sources = {"eval_data": tuple(samples(eval_data, "search(eval_data)")[0].shape[1:]),
               "train_data": None if train is None else tuple(train[0].shape[1:]),
               "calibration": None if calibration is None else tuple(samples(calibration, "search(calibration)")[0].shape[1:])}
    input_shape = shape_from_data(model, input_shape, sources, "search")
    quantizers = {p: Quantize(p, calibration=calibration, input_shape=input_shape)
                  for p in sorted({p for _, p in grid if p is not None})}
    model = _as_input(model, input_shape)
    reference = to_onnx(model) if is_torch_module(model) else as_model_proto(model)
    measurer = _Measurer(reference, eval_data)
    if is_torch_module(model):
        measurer._exports[id(model)] = (model, reference)
    budget = _check_budget(budget, measurer.y is not None)
    float_top1 = None
    if measurer.y is not None and measurer.reference_out is not None:
        float_top1 = float((measurer.reference_out.argmax(1) == measurer.y).mean())

    shared: dict[float, list[_Given]] = {}
    tried: list[dict[str, Any]] = []
    results: list[tuple[tuple[int, int, int], PipelineResult, dict[str, Any]]] = []
    for amount, precision in grid:
        if amount > 0 and amount not in shared:
            prune_step = Prune(amount, structured=structured, input_shape=input_shape)
            start = time.perf_counter()
            pruned = prune_step.apply(model)
            shared[amount] = [_Given(prune_step, pruned, time.perf_counter() - start)]
            if train is not None:
                distill_step = Distill(copy.deepcopy(model), train, epochs=epochs, progress=progress)
                start = time.perf_counter()
                shared[amount].append(_Given(distill_step, distill_step.apply(pruned), time.perf_counter() - start))
        steps: list[Step] = list(shared.get(amount, [])) if amount > 0 else []
        if precision is not None:
            steps.append(quantizers[precision])
        result = run_steps(model, tuple(steps), measurer, reference, input_name="float")
        for report, step in zip(result.steps[1:], steps):
            if isinstance(step, _Given):
                report.seconds = step.seconds
        final = result.final
        why = _violations(final, budget, float_top1)
        row = {"prune": amount, "precision": precision or "float", **{k: v for k, v in final.row().items()
                                                                       if k not in ("step", "s")},
               "meets": not why, "why not": "; ".join(why) or None}
        tried.append(row)
        if not why:
            activation_bits = {None: 32, "int8": 8}.get(precision, 16)
            results.append(((final.stats.weight_bytes, final.stats.macs, activation_bits), result,
                            {"prune": amount, "precision": precision}))
    search_result = SearchResult(None, {}, tried, float_top1)  # type: ignore[arg-type]
    if not results:
        raise CompressionError(f"search: no candidate meets the budget {budget}:\n{search_result.table()}")
    _, best, candidate = min(results, key=lambda item: item[0])
    search_result.best, search_result.candidate = best, candidate
    return search_result
