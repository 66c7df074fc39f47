"""``compile(model, target, **options) -> CompiledModel``: the compiler's one entry point.

Compiles are cached in memory by a content key (model bytes, target figures, options, compiler
version), so a test suite compiling the same model in many tests pays once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CompileError, InputError
from ..ir.graph import Graph
from ..targets.model import Target


def _source_version(release: str = "0.1.0") -> str:
    """Release plus a hash of the sources that determine programs and their figures.

    Baselines record it as provenance, so a baseline move caused by a compiler, importer or
    emulator edit says so, even between releases.
    """
    import hashlib

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for stage in ("ir", "compiler", "npu"):
        for path in sorted((root / stage).glob("*.py")):
            if path.name.startswith("cli"):
                continue
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return f"{release}+{digest.hexdigest()[:10]}"


__version__ = _source_version()

OPTIONS = {
    "sram_limit_bytes": "SRAM the planner may use (default: the target's sram_bytes)",
    "double_buffer": "alternate buffer slots so DMA overlaps compute (default True)",
    "cores": "cores to schedule on (default: all of the target's)",
    "fallback": "'host' or 'error' for ops the NPU cannot run (default: the target's)",
}
_CACHE: OrderedDict[str, CompiledModel] = OrderedDict()
CACHE_SIZE = 32


@dataclass
class CompiledModel:
    """A program plus what produced it; runs float or integer inputs on the emulator."""

    program: Any
    graph: Graph
    target: Target
    cache_key: str
    options: dict
    steps: list = field(default_factory=list)
    alias_steps: list = field(default_factory=list)
    memory: Any = None
    _emulator: Any = field(default=None, repr=False)
    _zero_run: Any = field(default=None, repr=False)
    _layer_cache: Any = field(default=None, repr=False)

    # ---- running ------------------------------------------------------------------------------
    @property
    def emulator(self):
        if self._emulator is None:
            from ..npu.emulator import Emulator
            self._emulator = Emulator(self.target)
        return self._emulator

    def run_quantized(self, int_inputs) -> Any:
        """The IR's integers in, integers out, each in the model's own layout and stacking (see
        :meth:`run`); float32 for the inputs and outputs a model leaves unquantised. For a float
        boundary these are the quantised values ``run()`` would compute; ``execution.outputs`` and
        ``execution.extra["raw_outputs"]`` hold the same arrays."""
        arrays, stacking = self._stacked(int_inputs, quantized=True)
        prepared = {}
        for name, arr in arrays.items():
            b = self.graph.boundary(name)
            want = self.program.tensors[name].dtype
            prepared[name] = self._to_program(name, b, _integers(name, arr, want, "run_quantized()", b))
        ex = self._run_program(prepared)
        ex.outputs = {name: self._from_program(name, raw, stacking, dequantize=False)
                      for name, raw in ex.outputs.items()}
        ex.extra["raw_outputs"] = dict(ex.outputs)
        return ex

    def run(self, inputs) -> Any:
        """Inputs in the model's own dtype, shape and layout -> Execution with outputs likewise.

        Each graph input and output follows its :class:`~pytest_npu.ir.graph.Boundary`: a float
        boundary (an ONNX QDQ model's float input, a TFLite input) takes floats and quantises them
        with the model's parameters, and dequantises outputs; an integer one (a tf2onnx int8 input,
        a QuantizeLinear graph output) takes and returns the integers as they are. ``inputs`` is
        one array (single-input models) or a dict name -> array; each array is one inference in
        the model's shape, N of them stacked on a new leading axis, or -- where axis 0 is a batch
        axis of size 1 -- N stacked along it. Outputs come back stacked the same way;
        ``execution.extra["raw_outputs"]`` holds the IR's integers (model layout).
        """
        arrays, stacking = self._stacked(inputs, quantized=False)
        prepared = {}
        for name, arr in arrays.items():
            b = self.graph.boundary(name)
            if b.quant is not None:
                real = _real(name, arr)
                ir = _quant_along(b.quant, b.to_ir(real), "quantize")
            elif b.dtype == "float32":
                ir = b.to_ir(_real(name, arr, finite=False))
            else:
                ir = b.to_ir(_integers(name, arr, b.dtype, "run()", b))
            prepared[name] = self._to_program(name, None, ir)
        ex = self._run_program(prepared)
        raw, outputs = {}, {}
        for name, y in ex.outputs.items():
            raw[name] = self._from_program(name, y, stacking, dequantize=False)
            outputs[name] = self._from_program(name, y, stacking, dequantize=True)
        ex.outputs = outputs
        ex.extra["raw_outputs"] = raw
        ex.extra["layers"] = self.layers(ex)
        return ex

    def _run_program(self, prepared: dict[str, np.ndarray]) -> Any:
        """Program-shaped arrays ``(N, *per-inference shape)`` -> the emulator's Execution."""
        return self.emulator.run(self.program, prepared)

    def _as_dict(self, inputs) -> dict:
        names = list(self.program.inputs)
        if isinstance(inputs, dict):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InputError(f"missing input(s) {missing}; the model takes {names}")
            unknown = [n for n in inputs if n not in names]
            if unknown:
                raise InputError(f"unknown input(s) {unknown}; the model takes {names}")
            return inputs
        if len(names) != 1:
            raise InputError(f"the model takes {len(names)} inputs {names}; pass a dict name -> array")
        if isinstance(inputs, (tuple, list)) and any(
                isinstance(v, (np.ndarray, tuple, list, dict)) for v in inputs) and not _uniform(inputs):
            raise InputError(f"input '{names[0]}' got a {type(inputs).__name__} of {len(inputs)} items of "
                             "different shapes (an (x, labels) pair?); pass the input array alone")
        return {names[0]: inputs}

    def _stacked(self, inputs, *, quantized: bool) -> tuple[dict[str, np.ndarray], str]:
        """Every input as ``(N, *model shape)`` and how the caller stacked them ("one" inference,
        N "stacked" on a new axis, or N along the "batch" axis)."""
        arrays, modes, counts = {}, set(), set()
        for name, value in self._as_dict(inputs).items():
            arr = _numeric(name, value)
            b = self.graph.boundary(name)
            shape = tuple(b.shape)
            if arr.shape == shape:
                arrays[name], mode = arr[None], "one"
            elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
                arrays[name], mode = arr, "stacked"
            elif b.batch and shape and arr.ndim == len(shape) and arr.shape[1:] == shape[1:]:
                arrays[name], mode = arr[:, None], "batch"
            elif b.batch and shape and arr.shape == shape[1:]:
                arrays[name], mode = arr[None, None], "batch"
            else:
                raise InputError(self._shape_problem(name, arr.shape, b, quantized))
            modes.add(mode)
            counts.add(arrays[name].shape[0])
        if 0 in counts:
            raise InputError(f"the inputs hold no inference (a leading axis of 0): {sorted(arrays)}; pass at "
                             "least one")
        if len(counts) > 1 or len(modes) > 1:
            raise InputError(f"inputs disagree on how many inferences they hold ({sorted(counts)} "
                             f"stacked as {sorted(modes)}); give every input the same leading count")
        return arrays, modes.pop() if modes else "one"

    def _shape_problem(self, name: str, got: tuple, b, quantized: bool) -> str:
        shape = tuple(b.shape)
        forms = [f"{shape} (one inference)", f"(N, {', '.join(map(str, shape))}) (N inferences)"]
        if b.batch and shape:
            forms.append(f"(N, {', '.join(map(str, shape[1:]))}) (N along the batch axis)")
        layout = "" if b.perm is None else " in the model's layout (not the NPU's NHWC)"
        text = (f"input '{name}' has shape {got}; {'run_quantized()' if quantized else 'run()'} takes "
                f"{' or '.join(forms)}{layout}")
        blocker = self.graph.metadata.get("batch_blocker")
        if not b.batch and shape and shape[0] == 1 and blocker:
            text += f". Axis 0 is not a batch axis: {blocker}"
        return text

    def _to_program(self, name: str, b, x: np.ndarray) -> np.ndarray:
        """``(N, *model shape)`` (``b`` given) or ``(N, *IR shape)`` -> ``(N, *program shape)``."""
        if b is not None:
            x = b.to_ir(x)
        return np.ascontiguousarray(x).reshape(x.shape[0], *self.program.tensors[name].shape)

    def _from_program(self, name: str, y: np.ndarray, stacking: str, *, dequantize: bool) -> np.ndarray:
        b = self.graph.boundary(name)
        y = np.asarray(y).reshape(y.shape[0], *self.graph.tensors[name].shape)
        if dequantize and b.quant is not None:
            y = _quant_along(b.quant, y, "dequantize")
        y = b.from_ir(y)
        if stacking == "one":
            return y[0]
        if stacking == "batch" and b.batch and y.ndim >= 2 and y.shape[1] == 1:
            return y.reshape(y.shape[0], *y.shape[2:])
        return y

    # ---- reporting ----------------------------------------------------------------------------
    def layers(self, execution=None) -> list[dict]:
        """Per-layer rows computed from a run's trace (one zero-input inference if none given)."""
        from .report import layer_rows
        if execution is None:
            if self._zero_run is None:
                zeros = {}
                for name in self.program.inputs:
                    info = self.program.tensors[name]
                    q = self.graph.input_quant.get(name) or self.graph.tensors[name].quant
                    zp = int(np.atleast_1d(q.zero_point)[0]) if q is not None else 0
                    zeros[name] = np.full((1, *info.shape), zp, dtype=info.dtype)
                self._zero_run = self._run_program(zeros)
            execution = self._zero_run
        # Timing is data-independent, so every run of this program shares its trace rows: the
        # per-layer table is computed once (it was a third of a batch-1 run of a small model).
        key = tuple(id(row) for row in execution.trace)
        if self._layer_cache is None or self._layer_cache[0] != key:
            self._layer_cache = (key, layer_rows(self, execution), list(execution.trace))
        return [dict(row) for row in self._layer_cache[1]]

    def unsupported(self) -> list[tuple[str, str, str]]:
        """(layer, op, reason) of every layer the host runs."""
        return [(s.name, s.op, s.reason) for s in self.steps if s.where == "host"]

    def report(self) -> str:
        from .report import text_report
        return text_report(self)


# ---- compile ----------------------------------------------------------------------------------
def _model_bytes_and_graph(model) -> tuple[bytes, Graph | None, Any]:
    """Bytes to hash, an already-imported graph (if given one) and the ModelProto (if any)."""
    if isinstance(model, Graph):
        return _graph_digest(model), model, None
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString(), None, model
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), None, None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise CompileError(f"{path}: no such model file; pass a .tflite or .onnx path, bytes, a "
                               "ModelProto or an ir.Graph")
        return path.read_bytes(), None, None
    raise CompileError(f"compile() got a {type(model).__name__} as the model; pass a .tflite or .onnx path, "
                       "bytes, an onnx.ModelProto or a pytest_npu.ir.Graph")


def _graph_digest(graph: Graph) -> bytes:
    h = hashlib.sha256()
    h.update(json.dumps([graph.name, graph.inputs, graph.outputs], default=str).encode())
    for node in graph.nodes:
        h.update(repr((node.name, node.op, node.inputs, node.outputs, sorted(node.attrs.items()))).encode())
    for name in sorted(graph.tensors):
        t = graph.tensors[name]
        h.update(repr((name, tuple(t.shape), t.dtype)).encode())
        if t.quant is not None:
            h.update(np.asarray(t.quant.scale, np.float64).tobytes())
            h.update(np.asarray(t.quant.zero_point, np.int64).tobytes())
        if t.data is not None:
            h.update(np.ascontiguousarray(t.data).tobytes())
    for qmap in (graph.input_quant, graph.output_quant):
        for name in sorted(qmap):
            h.update(name.encode() + np.asarray(qmap[name].scale, np.float64).tobytes()
                     + np.asarray(qmap[name].zero_point, np.int64).tobytes())
    return b"ir-graph:" + h.digest()


def _resolve_target(target) -> Target:
    if isinstance(target, Target):
        return target
    from .. import targets
    return targets.load(target)


def _check_options(options: dict, target: Target) -> dict:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CompileError(f"unknown compile option(s) {unknown}; valid options: "
                           + "; ".join(f"{k}: {v}" for k, v in OPTIONS.items()))
    sram = options.get("sram_limit_bytes")
    if sram is not None and (not isinstance(sram, (int, np.integer)) or not 0 < sram <= target.sram_bytes):
        raise CompileError(f"sram_limit_bytes={sram!r}: must be an integer in 1..{target.sram_bytes} "
                           f"({target.name}'s SRAM); for more SRAM use dataclasses.replace(target, "
                           "sram_bytes=...)")
    cores = options.get("cores")
    if cores is not None and (not isinstance(cores, (int, np.integer)) or not 1 <= cores <= target.cores):
        raise CompileError(f"cores={cores!r}: {target.name} has {target.cores} core(s); pass 1..{target.cores}")
    fallback = options.get("fallback")
    if fallback is not None and fallback not in ("host", "error"):
        raise CompileError(f"fallback={fallback!r}: use 'host' or 'error'")
    return {"sram_limit_bytes": int(sram) if sram is not None else target.sram_bytes,
            "double_buffer": bool(options.get("double_buffer", True)),
            "cores": int(cores) if cores is not None else target.cores,
            "fallback": fallback or target.fallback}


def compile(model, target, **options) -> CompiledModel:  # noqa: A001 - the public name
    """Compile ``model`` (path | bytes | ModelProto | ir.Graph) for ``target`` (name | path | Target)."""
    target = _resolve_target(target)
    opts = _check_options(options, target)
    if opts["fallback"] != target.fallback:
        # the override is part of the target the program runs on (the emulator checks it)
        target = dataclasses.replace(target, fallback=opts["fallback"])
    data, graph, proto = _model_bytes_and_graph(model)
    key = hashlib.sha256(b"\0".join([
        hashlib.sha256(data).digest(), target.content_hash().encode(),
        json.dumps(opts, sort_keys=True).encode(), __version__.encode()])).hexdigest()
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    if graph is None:
        from ..ir import import_model
        graph = import_model(proto if proto is not None else
                             (Path(model) if isinstance(model, (str, os.PathLike)) else data))
    if options.get("cores") is None and target.cores > 1:
        cm = _fastest_core_count(graph, target, opts, key)
    else:
        cm = _compile_graph(graph, target, opts, key)
    _CACHE[key] = cm
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return cm


def _compile_graph(graph: Graph, target: Target, opts: dict, key: str) -> CompiledModel:
    from .codegen import CodeGen
    from .legalize import legalize
    from .memory import plan_memory

    legal = legalize(graph, target, opts["fallback"])
    plan = plan_memory(graph, legal.steps, legal.aliases, opts["sram_limit_bytes"], opts["cores"],
                       opts["double_buffer"], target)
    metadata = {
        "compiler": "pytest_npu.compiler", "compiler_version": __version__, "graph": graph.name,
        "source": graph.source, "options": opts, "sram_peak_bytes": plan.peak,
        "spilled": plan.spilled,
        "layers": [{"name": s.name, "op": s.op, "where": s.where, "reason": s.reason} for s in legal.steps],
    }
    program = CodeGen(graph, legal, plan, target, opts["cores"], metadata).build()
    return CompiledModel(program=program, graph=graph, target=target, cache_key=key, options=opts,
                         steps=legal.steps, alias_steps=legal.alias_steps, memory=plan)


def _fastest_core_count(graph: Graph, target: Target, opts: dict, key: str) -> CompiledModel:
    """With no ``cores`` option, schedule on all cores and on one, and keep the faster program.

    Splitting tiny layers across cores costs more in per-instruction overhead and extra DMAs
    than it saves (the digits CNN runs 1658 cycles on one edge-3core core, 1950 on three), and
    a compiler that makes a model slower by giving it more cores is not one users would accept.
    Both candidates are timed by the emulator's own (data-independent) cost model.
    """
    from ..npu.emulator import Emulator

    emulator = Emulator(target)
    best, best_cycles = None, None
    for cores in (target.cores, 1):
        cm = _compile_graph(graph, target, {**opts, "cores": cores}, key)
        cycles = emulator.timing(cm.program).summary.cycles
        if best_cycles is None or cycles < best_cycles:
            best, best_cycles = cm, cycles
    assert best is not None
    return best


def clear_cache() -> None:
    _CACHE.clear()


# ---- run-time inputs ----------------------------------------------------------------------------
def _uniform(items) -> bool:
    try:
        return np.asarray(items).dtype != object
    except ValueError:
        return False


def _numeric(name: str, value) -> np.ndarray:
    """The user's value as a numeric array, or an InputError naming the input."""
    if isinstance(value, dict):
        raise InputError(f"input '{name}' got a dict; pass an array")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"input '{name}' cannot be read as an array ({exc}); pass a numeric array "
                         "of one shape (not a ragged list or an (x, labels) pair)") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"input '{name}' holds {arr.dtype} values ({arr.dtype.kind!r} kind); pass a "
                         "numeric array")
    return arr


def _real(name: str, arr: np.ndarray, finite: bool = True) -> np.ndarray:
    if arr.dtype.kind == "b":
        raise InputError(f"input '{name}' is boolean; the model takes float32 values")
    x = arr.astype(np.float32)
    if finite and x.size and not np.isfinite(x).all():
        raise InputError(f"input '{name}' contains NaN or infinity; the model quantises it, so give "
                         "finite values")
    return x


def _integers(name: str, arr: np.ndarray, dtype: str, how: str, b) -> np.ndarray:
    """Integer values for an integer tensor of ``dtype`` (float32 tensors take reals)."""
    if dtype == "float32":
        return _real(name, arr, finite=False)
    if arr.dtype.kind not in "iu":
        hint = ""
        if b is not None and b.quant is not None:
            hint = (f" (the model's floats map to them with scale {np.asarray(b.quant.scale).tolist()}, "
                    f"zero point {np.asarray(b.quant.zero_point).tolist()}; run() does that)")
        elif how == "run()":
            hint = " (the model's input is an integer tensor: quantise your data as it expects)"
        raise InputError(f"input '{name}' is {arr.dtype}; {how} takes {dtype} integers here{hint}")
    info = np.iinfo(np.dtype(dtype))
    if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise InputError(f"input '{name}' has values in [{arr.min()}, {arr.max()}], outside {dtype} "
                         f"[{info.min}, {info.max}]")
    return arr.astype(dtype)


def _quant_along(q, x: np.ndarray, how: str) -> np.ndarray:
    """QuantParams.quantize/dequantize on a batch-first array (a per-channel axis shifts by one)."""
    from ..ir.graph import QuantParams

    if q.axis is not None and np.asarray(q.scale).size > 1:
        shape = [1] * x.ndim
        shape[q.axis + 1] = -1
        q = QuantParams(np.asarray(q.scale).reshape(shape), np.asarray(q.zero_point).reshape(shape),
                        q.dtype, None, q.rounding)
    return getattr(q, how)(x)
