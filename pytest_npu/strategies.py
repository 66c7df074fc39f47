"""Hypothesis strategies for NPU tests: model inputs from an ONNX signature, quantisation parameters.

Importing this module registers the ``npu`` settings profile (``--hypothesis-profile=npu``): no
deadline (the emulator's own cycle count is the latency that matters, and the first example pays
for compilation), ``derandomize`` when the ``CI`` environment variable is set (a CI gate must not
depend on luck), and ``print_blob`` so a failure can be replayed with ``@reproduce_failure``.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .errors import ModelError

settings.register_profile(
    "npu", deadline=None, max_examples=50, derandomize=bool(os.environ.get("CI")), print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_ONNX_DTYPES = {2: "uint8", 3: "int8", 5: "int16"}


def inputs_for(model, batch: int = 1, within="calibration", calibration=None):
    """Arrays (one input) or dicts name -> array (several) shaped like ``model``'s inputs.

    within: ``"calibration"`` (the min..max of ``calibration``, the range the quantiser saw),
    ``"dtype"`` (everything the input's QuantizeLinear can represent), or ``(lo, hi)``.
    Values are finite float32 without subnormals (NPUs flush them); the batch axis gets ``batch``.
    An int8/uint8/int16 input (a tf2onnx export) gets integers of its dtype (``"dtype"``: its range).
    """
    from .harness.session import _Model, _split_model

    quantized, _ = _split_model(model)
    loaded = _Model.load(quantized, "inputs_for")
    if not isinstance(batch, int) or batch < 1:
        raise ModelError(f"inputs_for({loaded.label}): batch must be a positive int, got {batch!r}.")
    strategies = {}
    for value in loaded.proto.graph.input:
        if value.name not in loaded.input_names:
            continue
        shape = _shape(value, batch, loaded.label)
        integer = _ONNX_DTYPES.get(value.type.tensor_type.elem_type)
        if integer is not None:      # an integer input (a tf2onnx export): its own integers
            qmin, qmax = _DTYPE_RANGES[integer]
            lo, hi = (qmin, qmax) if within == "dtype" else _bounds(within, calibration, loaded, value.name)
            ints = st.integers(max(qmin, int(np.ceil(lo))), min(qmax, int(np.floor(hi))))
            strategies[value.name] = hnp.arrays(np.dtype(integer), shape, elements=ints)
            continue
        lo, hi = _bounds(within, calibration, loaded, value.name)
        elements = st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)
        strategies[value.name] = hnp.arrays(np.float32, shape, elements=elements)
    if len(strategies) == 1:
        return next(iter(strategies.values()))
    return st.fixed_dictionaries(strategies)


def _shape(value, batch: int, label: str) -> tuple[int, ...]:
    dims = []
    for axis, dim in enumerate(value.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and (axis > 0 or dim.dim_value > 0):
            dims.append(batch if axis == 0 else dim.dim_value)
        elif axis == 0:
            dims.append(batch)
        else:
            raise ModelError(f"inputs_for({label}): input {value.name!r} axis {axis} is dynamic "
                             f"({dim.dim_param or '?'}); only the batch axis may be. Export with a fixed shape.")
    return tuple(dims)


def _bounds(within, calibration, model, name: str) -> tuple[float, float]:
    if isinstance(within, tuple) and len(within) == 2:
        lo, hi = (float(v) for v in within)
    elif within == "calibration":
        if calibration is None:
            raise ModelError(f"inputs_for({model.label}): within='calibration' needs calibration=<the "
                             f"calibration arrays> (or use within='dtype' or within=(lo, hi)).")
        data = calibration[name] if isinstance(calibration, dict) else calibration
        data = np.asarray(data[0] if isinstance(data, tuple) else data, dtype=np.float32)
        lo, hi = float(data.min()), float(data.max())
    elif within == "dtype":
        lo, hi = _dtype_bounds(model, name)
    else:
        raise ModelError(f"inputs_for({model.label}): within={within!r} is not one of 'calibration', "
                         f"'dtype' or a (lo, hi) tuple.")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ModelError(f"inputs_for({model.label}): input range ({lo}, {hi}) for {name!r} is not a finite "
                         f"interval with lo <= hi.")
    return _inward32(lo, up=True), _inward32(hi, up=False)


def _inward32(value: float, up: bool) -> float:
    """Round a bound to float32 without leaving the interval (hypothesis needs representable bounds)."""
    single = np.float32(value)
    if (up and float(single) < value) or (not up and float(single) > value):
        single = np.nextafter(single, np.float32(np.inf if up else -np.inf))
    return float(single)


def _dtype_bounds(model, name: str) -> tuple[float, float]:
    """The real range of the first QuantizeLinear reading ``name``: (qmin - zp) * s .. (qmax - zp) * s."""
    from onnx import numpy_helper

    graph = model.proto.graph
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == name:
            scale = float(numpy_helper.to_array(constants[node.input[1]]).reshape(-1)[0])
            zero = constants.get(node.input[2]) if len(node.input) > 2 else None
            dtype = _ONNX_DTYPES.get(zero.data_type, "uint8") if zero is not None else "uint8"
            zp = int(numpy_helper.to_array(zero).reshape(-1)[0]) if zero is not None else 0
            qmin, qmax = _DTYPE_RANGES[dtype]
            return (qmin - zp) * scale, (qmax - zp) * scale
    raise ModelError(f"inputs_for({model.label}): within='dtype' needs a quantised model whose input "
                     f"{name!r} feeds a QuantizeLinear; use within=(lo, hi) for a float model.")


def quant_params(dtype: str = "int8", channels: int | None = None, symmetric: bool | None = None):
    """(scale, zero_point) pairs valid for ``dtype``: scales in [2^-12, 1], zero points in range.

    ``channels=n`` draws per-channel arrays (symmetric: zero points all 0, as for weights);
    int16 is symmetric by default (what onnxruntime's QInt16 uses).
    """
    if dtype not in _DTYPE_RANGES:
        from .harness.markers import suggest

        raise ModelError(f"quant_params: unknown dtype {dtype!r}.{suggest(dtype, _DTYPE_RANGES)} "
                         f"Use one of {', '.join(_DTYPE_RANGES)}.")
    qmin, qmax = _DTYPE_RANGES[dtype]
    symmetric = dtype == "int16" or channels is not None if symmetric is None else symmetric
    exponents = st.floats(-12.0, 0.0, allow_nan=False)
    scale = exponents.map(lambda e: float(np.float32(2.0 ** e)))
    zero_point = st.just(0 if qmin < 0 else 128) if symmetric else st.integers(qmin, qmax)
    if channels is None:
        return st.tuples(scale, zero_point)
    scales = hnp.arrays(np.float32, (channels,), elements=st.floats(2.0 ** -12, 1.0, width=32))
    zero_points = hnp.arrays(_np_dtype(dtype), (channels,), elements=zero_point)
    return st.tuples(scales, zero_points)


def _np_dtype(dtype: str):
    return {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}[dtype]
