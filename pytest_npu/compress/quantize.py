"""Post-training quantisation through onnxruntime (QDQ), as the NPU importer expects it.

``int8``: int8 activations and weights; ``int16`` (alias ``a16w8``): int16 activations with int8
weights, in standard-domain Q/DQ at opset 21 (no ``UseQDQContribOps``, which onnx's reference
evaluator and our importer cannot read).  Weights are symmetric, per output channel by default.
``dynamic=True`` uses ``quantize_dynamic`` (int8 weights, activations quantised at run time).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from pytest_npu.errors import CompressionError

from ._data import CALIBRATION_BATCH, batches, check_sample_shape, samples
from ._export import OPSET, quiet, to_onnx
from ._stats import as_model_proto
from ._step import Step, choose, is_torch_module

PRECISIONS = ("int8", "int16", "a16w8")
# onnxruntime quantises the ops of its QDQ and QLinear registries by default; these it leaves in
# float although the NPU runs them on integers (ReduceMean over H, W is a global average pool --
# nn.AdaptiveAvgPool2d(1) exports as one). onnxruntime's generic QDQ handling (quantised inputs and
# output) is exactly what the importer folds, so they are added to op_types_to_quantize.
EXTRA_OPS_TO_QUANTIZE = ("ReduceMean",)
METHODS = ("minmax", "entropy", "percentile")


def _input_dims(model: onnx.ModelProto) -> tuple[str, list[int | None], int | None]:
    graph_inputs = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in graph_inputs]
    if len(inputs) != 1:
        raise CompressionError(f"quantize: the model has {len(inputs)} inputs ({[i.name for i in inputs]}); "
                               "calibration supports single-input models")
    dims = inputs[0].type.tensor_type.shape.dim
    sizes: list[int | None] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return inputs[0].name, sizes[1:], sizes[0] if sizes else None


def _calibration_reader(batches_: list[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds the calibration batches once per pass; ``rewind`` restarts (entropy needs two passes)."""

        def __init__(self) -> None:
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(batches_):
                return None
            self.position += 1
            return {input_name: batches_[self.position - 1]}

        def rewind(self) -> None:
            self.position = 0

    return _Reader()


class Quantize(Step):
    kind = "onnx"

    def __init__(self, precision: str = "int8", calibration: Any = None, method: str = "minmax",
                 per_channel: bool = True, dynamic: bool = False, output: str | Path | None = None,
                 input_shape: tuple[int, ...] | None = None):
        self.precision = choose(precision, PRECISIONS, "quantize(precision)")
        self.method = choose(method, METHODS, "quantize(method)")
        self.per_channel = bool(per_channel)
        self.dynamic = bool(dynamic)
        self.output = Path(output) if output is not None else None
        self.input_shape = input_shape
        if self.method == "entropy" and self.precision != "int8":
            raise CompressionError(f"quantize(precision={precision!r}, method='entropy'): KL-entropy clipping is "
                                   "an 8-bit technique (it models 128 levels); with 65536 int16 levels it only "
                                   "clips. Use method='minmax' or 'percentile' for int16 activations")
        if self.dynamic:
            if self.precision != "int8":
                raise CompressionError(f"quantize(precision={precision!r}, dynamic=True): onnxruntime's dynamic "
                                       "quantisation has int8 weights only; use precision='int8' or dynamic=False")
            self.calibration = None if calibration is None else samples(calibration, "quantize(calibration)")[0]
        else:
            self.calibration = samples(calibration, "quantize(calibration)")[0]

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        return None if self.calibration is None else tuple(self.calibration.shape[1:])

    @property
    def name(self) -> str:
        if self.dynamic:
            return "quantize int8 dynamic"
        return f"quantize {self.precision} {self.method}{'' if self.per_channel else ' per-tensor'}"

    def apply(self, model: Any) -> onnx.ModelProto | Path:
        if is_torch_module(model):
            model = to_onnx(model, self.input_shape)
        proto = onnx.ModelProto()
        proto.CopyFrom(as_model_proto(model, "quantize(model)"))
        with tempfile.TemporaryDirectory(prefix="pytest-npu-quant-") as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
            onnx.save_model(proto, str(src))
            if self.dynamic:
                self._dynamic(src, dst)
            else:
                self._static(proto, src, dst)
            result = onnx.load(str(dst))
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            onnx.save_model(result, str(self.output))
            return self.output
        return result

    def _dynamic(self, src: Path, dst: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with quiet():
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=self.per_channel)

    def _entropy_cache(self, src: Path, reader: Any, cache: Path) -> Path:
        """Run entropy calibration with histogram sizes that let the KL search search.

        quantize_static builds its entropy calibrator with 128 histogram bins and 128 quantised bins
        (it passes no bin options through), which leaves the KL search one candidate, the full
        min..max range: entropy would silently equal minmax.  We calibrate with 512 bins here
        (its pure-Python search costs about a second on a small CNN with 2 cores; 2048 bins took
        8 s for no change in accuracy) and hand the ranges to quantize_static through its cache.
        """
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

        calibrator = create_calibrator(src, None, augmented_model_path=str(cache.with_suffix(".aug.onnx")),
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": 512, "num_quantized_bins": 128})
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache)
        return cache

    def _static(self, proto: onnx.ModelProto, src: Path, dst: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        opset = {op.domain: op.version for op in proto.opset_import}.get("", 0)
        if self.precision != "int8" and opset < OPSET:
            raise CompressionError(f"quantize({self.precision!r}): the model is opset {opset}; int16 Q/DQ needs "
                                   f"opset {OPSET}. Export with opset_version={OPSET} (pytest_npu.compress "
                                   "does when given a torch model)")
        input_name, sample_dims, fixed_batch = _input_dims(proto)
        assert self.calibration is not None
        check_sample_shape(self.calibration, sample_dims, "quantize(calibration)", f"model input {input_name!r}")
        size = fixed_batch if fixed_batch else CALIBRATION_BATCH
        reader = _calibration_reader(batches(self.calibration, size), input_name)
        activation = QuantType.QInt8 if self.precision == "int8" else QuantType.QInt16
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[self.method]
        try:
            with quiet():
                cache = self._entropy_cache(src, reader, dst.with_suffix(".calib.json")) \
                    if self.method == "entropy" else None
                quantize_static(src, dst, None if cache else reader, quant_format=QuantFormat.QDQ,
                                per_channel=self.per_channel, activation_type=activation,
                                weight_type=QuantType.QInt8, calibrate_method=method,
                                calibration_cache_path=cache, op_types_to_quantize=op_types_to_quantize())
        except CompressionError:
            raise
        except Exception as exc:
            raise CompressionError(f"onnxruntime could not quantise the model ({self.name}): "
                                   f"{type(exc).__name__}: {exc}") from exc


def op_types_to_quantize() -> list[str]:
    """onnxruntime's default operator set plus :data:`EXTRA_OPS_TO_QUANTIZE` (pass the same list as
    ``op_types_to_quantize=`` when calling ``quantize_static`` directly)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry) | set(EXTRA_OPS_TO_QUANTIZE))


def quantize(*args: Any, **kwargs: Any) -> Any:
    """``quantize("int8", calibration=x)`` -> a step; ``quantize(model, "int8", calibration=x)`` -> ModelProto.

    ``model`` is a torch module (exported first), an ONNX ModelProto, bytes or a path. Keywords:
    ``calibration`` (array, ``(x, y)``, iterable of batches or DataLoader), ``method``
    ("minmax" | "entropy" | "percentile"), ``per_channel``, ``dynamic``, ``output`` (save there and
    return the path), ``input_shape`` (for torch modules without an ``input_shape`` attribute).
    """
    if args and not isinstance(args[0], str):
        model, rest = args[0], args[1:]
        return Quantize(*rest, **kwargs).apply(model)
    if args and isinstance(args[0], str) and args[0].endswith(".onnx"):
        return Quantize(*args[1:], **kwargs).apply(args[0])
    return Quantize(*args, **kwargs)
