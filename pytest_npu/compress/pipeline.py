"""Apply compression steps in order and report what each one bought and cost.

Every row is measured on the ONNX form of the model at that point (float export for torch models),
with onnxruntime: parameters, MACs, weight bytes at stored width, serialised size, and, given
``eval_data``, top-1 against the labels and MSE / top-1 agreement against the float reference.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pytest_npu.errors import CompressionError

from ._data import samples
from ._export import to_onnx
from ._stats import ModelStats, as_model_proto, onnx_stats, run_onnx
from ._step import Step, is_torch_module


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 2)


@dataclass
class StepReport:
    name: str
    stats: ModelStats
    top1: float | None = None          # fraction correct against the labels of eval_data
    agreement: float | None = None     # fraction whose top-1 matches the float reference's
    mse: float | None = None           # mean squared error of the outputs against the float reference
    seconds: float = 0.0               # time the step itself took (not the measuring)

    @property
    def params(self) -> int:
        return self.stats.params

    @property
    def macs(self) -> int:
        return self.stats.macs

    @property
    def size_kib(self) -> float:
        return self.stats.size_kib

    def row(self) -> dict[str, Any]:
        return {"step": self.name, "params": self.stats.params, "nonzero": self.stats.nonzero,
                "MACs": self.stats.macs, "weights KiB": round(self.stats.size_kib, 2),
                "ONNX KiB": round(self.stats.onnx_kib, 2), "top-1 %": _percent(self.top1),
                "agree %": _percent(self.agreement), "MSE": None if self.mse is None else float(f"{self.mse:.3g}"),
                "s": round(self.seconds, 2)}


@dataclass
class PipelineResult:
    model: onnx.ModelProto               # the final model (quantised if a quantize step ran)
    torch_model: Any                     # the last torch model (before export/quantisation)
    steps: list[StepReport]              # first row: the input model, then one row per step
    float_model: onnx.ModelProto         # the float reference, for accuracy comparisons
    eval_labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def final(self) -> StepReport:
        return self.steps[-1]

    def table(self, tablefmt: str = "github") -> str:
        from tabulate import tabulate

        rows = [s.row() for s in self.steps]
        keep = [k for k in rows[0] if any(r[k] is not None for r in rows)]
        return tabulate([[r[k] for k in keep] for r in rows], headers=keep, tablefmt=tablefmt,
                        missingval="-", floatfmt="g", intfmt=",")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(self.model, str(path))
        return path


class _Measurer:
    """Measures models against the float reference; caches exports of torch models it has seen."""

    def __init__(self, reference: onnx.ModelProto, eval_data: Any):
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.reference_out: np.ndarray | None = None
        if eval_data is not None:
            self.x, self.y = samples(eval_data, "pipeline(eval_data)")
            self.reference_out = run_onnx(reference, self.x)
        self._exports: dict[int, tuple[Any, onnx.ModelProto]] = {}

    def onnx_of(self, model: Any) -> onnx.ModelProto:
        if not is_torch_module(model):
            return model
        hit = self._exports.get(id(model))
        if hit is None or hit[0] is not model:
            hit = (model, to_onnx(model))
            self._exports[id(model)] = hit
        return hit[1]

    def report(self, name: str, proto: onnx.ModelProto, seconds: float) -> StepReport:
        result = StepReport(name, onnx_stats(proto), seconds=seconds)
        reference = self.reference_out
        if self.x is not None and reference is not None:
            out = run_onnx(proto, self.x)
            if out.shape != reference.shape:
                raise CompressionError(f"pipeline: after {name!r} the model outputs {out.shape[1:]} per sample but "
                                       f"the float reference outputs {reference.shape[1:]}")
            result.mse = float(np.mean((out.astype(np.float64) - reference) ** 2))
            if out.ndim == 2 and out.shape[1] > 1:
                predicted = out.argmax(1)
                result.agreement = float(np.mean(predicted == reference.argmax(1)))
                if self.y is not None:
                    result.top1 = float(np.mean(predicted == self.y))
        return result


def _as_input(model: Any, input_shape: tuple[int, ...] | None) -> Any:
    if is_torch_module(model):
        model = copy.deepcopy(model).eval()
        if input_shape is not None:
            model.input_shape = tuple(input_shape)
        return model
    return as_model_proto(model, "pipeline(model)")


def shape_from_data(model: Any, input_shape: tuple[int, ...] | None,
                    sources: dict[str, tuple[int, ...] | None], where: str) -> tuple[int, ...] | None:
    """The sample shape a torch model is exported with: ``input_shape`` or the model's own if set,
    else the shape of one sample of the data it is measured, calibrated or trained on, which must
    all agree (a disagreement is refused, naming each source: never a guess)."""
    if input_shape is not None or not is_torch_module(model) or getattr(model, "input_shape", None) is not None:
        return input_shape
    found = {name: shape for name, shape in sources.items() if shape is not None}
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in found.items())
        raise CompressionError(f"{where}: the data disagree on the model's input shape ({listing}); pass samples "
                               "of one shape, or input_shape=(C, H, W) to say which one the model takes")
    return next(iter(found.values()), None)


def _check_steps(steps: tuple[Step, ...], starts_as_torch: bool) -> None:
    """Refuse a wrong argument or order before anything slow (export, training) runs."""
    torch_model = starts_as_torch
    for position, step in enumerate(steps, 1):
        if not isinstance(step, Step):
            raise CompressionError(f"pipeline: argument {position} after the model is a {type(step).__name__}, not "
                                   "a compression step; use compress.prune(...), distill(...) or quantize(...)")
        if step.kind == "torch" and not torch_model:
            raise CompressionError(f"pipeline: step {position} ({step.name}) needs a torch model, but the model is "
                                   "ONNX by then; put prune/distill steps before quantize")
        torch_model = torch_model and step.kind == "torch"


def run_steps(model: Any, steps: tuple[Step, ...], measurer: _Measurer, reference: onnx.ModelProto,
              input_name: str = "input") -> PipelineResult:
    _check_steps(steps, is_torch_module(model))
    current = model
    torch_model = model if is_torch_module(model) else None
    reports = [measurer.report(input_name, measurer.onnx_of(current), 0.0)]
    for position, step in enumerate(steps, 1):
        start = time.perf_counter()
        current = step.apply(current if step.kind == "torch" else measurer.onnx_of(current))
        seconds = time.perf_counter() - start
        if isinstance(current, (str, Path)):
            current = as_model_proto(current, f"pipeline step {position} output")
        if is_torch_module(current):
            torch_model = current
        reports.append(measurer.report(step.name, measurer.onnx_of(current), seconds))
    return PipelineResult(measurer.onnx_of(current), torch_model, reports, reference, measurer.y)


def pipeline(model: Any, *steps: Step, eval_data: Any = None, float_reference: Any = None,
             input_shape: tuple[int, ...] | None = None) -> PipelineResult:
    """Apply ``steps`` to ``model`` (torch module or ONNX) in order; measure after each.

    ``eval_data``: ``(x, y)`` (or ``x``) to measure top-1 and MSE; ``float_reference``: the model the
    MSE is measured against (default: ``model`` itself); ``input_shape``: sample shape for export when
    the torch model has no ``input_shape`` attribute (default: the shape of the samples in
    ``eval_data`` or in a step's calibration or training data).
    """
    _check_steps(steps, is_torch_module(model))
    sources = {"eval_data": None if eval_data is None else tuple(samples(eval_data, "pipeline(eval_data)")[0].shape[1:])}
    sources.update({f"step {i} ({step.name})": step.sample_shape for i, step in enumerate(steps, 1)})
    input_shape = shape_from_data(model, input_shape, sources, "pipeline")
    model = _as_input(model, input_shape)
    if float_reference is None:
        reference = to_onnx(model) if is_torch_module(model) else model
    else:
        reference = to_onnx(_as_input(float_reference, input_shape)) if is_torch_module(float_reference) \
            else as_model_proto(float_reference, "pipeline(float_reference)")
    measurer = _Measurer(reference, eval_data)
    if is_torch_module(model) and float_reference is None:
        measurer._exports[id(model)] = (model, reference)
    return run_steps(model, steps, measurer, reference)
