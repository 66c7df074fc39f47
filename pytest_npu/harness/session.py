"""The ``npu`` runner (compile cache, runs, metrics) and the per-test record it produces.

Heavy modules (numpy, onnx, onnxruntime, the compiler) are imported inside methods only: loading the
plugin must not slow down a pytest run that never touches an NPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .verdict import Breach

if TYPE_CHECKING:
    from .markers import Budget


@dataclass
class NpuRecord:
    """What one test measured on one target: the unit of budgets, baselines, history and reports.

    ``metrics`` hold the worst value over every ``npu.run`` of the test (max for costs and errors,
    min for sqnr_db / cosine / top1). ``provenance`` holds what determines the numbers (model sha256,
    target content hash, compile options, compiler version); ``layers`` the per-layer rows of the
    worst run; ``budgets`` the parsed npu_budget limits that applied.
    """

    nodeid: str
    name: str                       # test name with parameter ids, e.g. "test_port[u55-256]"
    module: str                     # test module path relative to rootdir
    target: str
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)
    budgets: dict[str, float] = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)  # npu_budget(compare={...}), for baseline plugins
    runs: int = 0                   # how many npu.run calls (hypothesis examples included) aggregated
    host: dict = field(default_factory=dict)       # host CPU wall time and speedup: reported, never gated
    outcome: str = ""               # pytest outcome of the call phase, filled on the controller
    breaches: list[Breach] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["breaches"] = [breach.as_dict() for breach in self.breaches]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NpuRecord:
        data = dict(data)
        data["breaches"] = [Breach.from_dict(row) for row in data.get("breaches", [])]
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, default=_builtin)

    @classmethod
    def from_json(cls, text: str) -> NpuRecord:
        return cls.from_dict(json.loads(text))


def _builtin(value):
    """numpy scalars and paths -> builtins, so records survive JSON and xdist's execnet."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------------------------------
# models: what npu.run accepts


@dataclass(frozen=True)
class ModelPair:
    """A quantised model and the float model it was made from (so ``reference="float"`` can work).

    ``npu.run((quantized, float_model), ...)`` builds one; so does any object with ``.float_model``
    (and ``.model`` or ``.quantized``), e.g. a compression result. Each side is an ONNX path,
    ``ModelProto`` or serialised bytes.
    """

    quantized: object
    float_model: object = None


@dataclass(frozen=True)
class _Model:
    """A model resolved to bytes once: the content hash keys the compile cache and the provenance."""

    blob: bytes
    sha256: str
    label: str                      # what to call it in messages (path or graph name)
    path: str | None = None         # the file it was read from: external data sits beside it

    @classmethod
    def load(cls, obj, role: str) -> _Model:
        import hashlib

        from ..errors import ModelError

        label = None
        if isinstance(obj, (str, os.PathLike)):
            path = Path(obj)
            if not path.is_file():
                raise ModelError(f"{role}: model file {str(path)!r} does not exist; pass the path of an "
                                 f".onnx file, an onnx.ModelProto or serialised model bytes.")
            blob, label = path.read_bytes(), str(path)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            blob = bytes(obj)
        elif hasattr(obj, "SerializeToString"):
            blob = obj.SerializeToString()
            label = getattr(getattr(obj, "graph", None), "name", None) or "<ModelProto>"
        else:
            raise ModelError(f"{role}: cannot use a {type(obj).__name__} as a model; pass an .onnx path, an "
                             f"onnx.ModelProto, bytes, or a (quantized, float_model) pair.")
        digest = hashlib.sha256(blob).hexdigest()
        return cls(blob, digest, label or f"<model {digest[:12]}>", label if isinstance(obj, (str, os.PathLike)) else None)

    @property
    def source(self):
        """What to hand to the compiler and onnxruntime: the path (its external data beside it) or the bytes."""
        return self.path if self.path is not None else self.blob

    @cached_property
    def proto(self):
        import onnx

        from ..errors import ModelError

        try:
            return onnx.load_from_string(self.blob)
        except Exception as exc:  # onnx raises DecodeError / RuntimeError variants
            raise ModelError(f"{self.label}: not a readable ONNX model ({exc}); re-export it or check "
                             f"the path.") from None

    @property
    def is_tflite(self) -> bool:
        from ..ir.tflite_import import is_tflite

        return is_tflite(self.blob[:8])

    @cached_property
    def tflite_graph(self):
        """The imported graph of a .tflite model: its inputs and their boundaries (shape, dtype)."""
        from ..ir import from_tflite

        return from_tflite(self.source)

    @cached_property
    def input_names(self) -> list[str]:
        if self.is_tflite:
            return list(self.tflite_graph.inputs)
        graph = self.proto.graph
        constants = {init.name for init in graph.initializer}
        return [value.name for value in graph.input if value.name not in constants]

    def input_spec(self, name: str) -> tuple[bool, int]:
        """(takes integers as they are, rank) of graph input ``name``, as the model declares it."""
        if self.is_tflite:
            boundary = self.tflite_graph.boundary(name)
            return boundary.dtype != "float32", len(boundary.shape)
        import onnx

        value = next(v for v in self.proto.graph.input if v.name == name)
        integer = value.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UNDEFINED)
        return integer, len(value.type.tensor_type.shape.dim)

    @cached_property
    def is_quantized(self) -> bool:
        if self.is_tflite:
            return True          # the importer takes integer TFLite models only
        return any(node.op_type in _QUANT_OPS or node.op_type.startswith("QLinear")
                   for node in self.proto.graph.node)


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def _split_model(model) -> tuple[object, object]:
    """(quantized, float or None) from a pair, a tuple, or an object carrying ``.float_model``."""
    if isinstance(model, ModelPair):
        return model.quantized, model.float_model
    if isinstance(model, (tuple, list)):
        if len(model) != 2:
            from ..errors import ModelError

            raise ModelError(f"npu.run: a model sequence must be a (quantized, float_model) pair; got "
                             f"{len(model)} items.")
        return model[0], model[1]
    float_model = getattr(model, "float_model", None)
    if float_model is not None:
        for name in ("quantized", "model"):
            if getattr(model, name, None) is not None:
                return getattr(model, name), float_model
    return model, None


# --------------------------------------------------------------------------------------------------
# the runner


@dataclass
class NpuResult:
    """What one ``npu.run`` measured. ``outputs`` are dequantised floats keyed by ONNX output name."""

    target: str
    outputs: dict
    metrics: dict[str, float]
    reference: dict | None
    host: dict
    layers: list[dict]
    execution: object                 # the first batch's npu.execution.Execution
    compiled: object                  # the CompiledModel
    breaches: list[Breach] = field(default_factory=list)

    @property
    def output(self):
        """The single output (error if the model has several)."""
        if len(self.outputs) != 1:
            raise KeyError(f"the model has {len(self.outputs)} outputs ({', '.join(self.outputs)}); "
                           f"index result.outputs by name")
        return next(iter(self.outputs.values()))


@dataclass
class _Aggregate:
    """Worst-so-far metrics of one test on one target."""

    metrics: dict[str, float] = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    host: dict = field(default_factory=dict)
    runs: int = 0
    diagnose: object = None             # callable -> (rows, note) for per-layer accuracy, worst run

    def add(self, metrics: dict[str, float], layers, provenance, host, diagnose) -> None:
        from .markers import METRICS

        worst_accuracy = not self.metrics or _accuracy_worse(metrics, self.metrics)
        for key, value in metrics.items():
            metric = METRICS.get(key)
            if key in self.metrics and metric is not None:
                value = metric.worse(self.metrics[key], value)
            self.metrics[key] = value
        if worst_accuracy:
            self.diagnose = diagnose
        self.layers, self.provenance, self.host = layers, provenance, host or self.host
        self.runs += 1


def _accuracy_worse(new: dict, old: dict) -> bool:
    a, b = new.get("sqnr_db"), old.get("sqnr_db")
    return a is not None and (b is None or a < b)


@dataclass
class TestContext:
    """The test currently in its call phase: where ``npu.run`` records go."""

    item: Any                         # the pytest.Item in its call phase
    target: str | None                # this test's npu_target parameter (None: not parametrised)
    budget: Budget
    enforce_per_run: bool             # inside @given, raise on the run itself so Hypothesis shrinks
    per_target: dict[str, _Aggregate] = field(default_factory=dict)


@dataclass
class RunnerOptions:
    targets: list[str]
    batch: int = 64
    host_runs: int = 5
    enforce: bool = True
    vela: bool = False           # record Vela's estimate for every .tflite run (--npu-vela)


class NpuRunner:
    """The ``npu`` fixture: compile (content-hash cached for the session), run, measure, record.

    One runner lives for the whole session; the plugin points it at the test in its call phase, so
    runs made inside a test (or inside each Hypothesis example) are attributed to that test.
    """

    def __init__(self, options: RunnerOptions):
        self.options = options
        self.context: TestContext | None = None
        self._targets: dict[str, object] = {}
        self._compiled: dict[tuple, object] = {}
        self._sessions: dict[tuple[str, bool], object] = {}
        self._host_ms: dict[str, float] = {}
        self._vela: dict[tuple, object] = {}
        self.compile_hits = 0

    # -- targets
    @property
    def default_target(self) -> str:
        return self.options.targets[0]

    def target(self, name_or_target=None):
        """A Target by name or path (cached); None: this test's target, else the first configured."""
        if name_or_target is None:
            name_or_target = (self.context.target if self.context and self.context.target
                              else self.default_target)
        if not isinstance(name_or_target, (str, os.PathLike)):
            return name_or_target
        key = str(name_or_target)
        if key not in self._targets:
            from .. import targets

            self._targets[key] = targets.load(name_or_target)
        return self._targets[key]

    # -- compile
    def compile(self, model, target=None, **options):
        """Compile ``model`` for ``target``; the same bytes, target and options compile once a session."""
        quantized, _ = _split_model(model)
        return self._compile(_Model.load(quantized, "npu.compile"), self.target(target), options)

    def _compile(self, model: _Model, target, options: dict):
        key = (model.sha256, target.content_hash(), tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key in self._compiled:
            self.compile_hits += 1
            return self._compiled[key]
        import pytest_npu

        compiled = pytest_npu.compile(model.source, target, **options)
        self._compiled[key] = compiled
        return compiled

    # -- run
    def run(self, model, inputs, reference=None, labels=None, target=None, **compile_options) -> NpuResult:
        """Compile (cached), run ``inputs`` on the emulated NPU, compare with ``reference``, record.

        reference: ``"float"`` (onnxruntime on the float model: pass a (quantized, float) pair),
        a float model (path / ModelProto / bytes), a ``.tflite`` (LiteRT's reference kernels on it,
        outputs dequantised), expected outputs (array, or dict by output name), or None (cost
        metrics only). ``inputs`` may be an ``(x, labels)`` tuple.
        """
        quantized, float_model = _split_model(model)
        qmodel = _Model.load(quantized, "npu.run")
        tgt = self.target(target)
        compiled = self._compile(qmodel, tgt, compile_options)
        if labels is None and _looks_like_xy(inputs):
            inputs, labels = inputs
        feeds = self._feeds(qmodel, inputs)
        outputs, execution = self._run_batched(compiled, feeds)
        layers = _builtin_rows(execution.extra.get("layers") or compiled.layers(execution))

        float_ref = self._float_reference(qmodel, float_model, reference)
        expected = self._reference_outputs(float_ref, reference, feeds, outputs)
        metrics = _cost_metrics(execution.summary, compiled, qmodel)
        estimate = self._vela_estimate(qmodel, tgt)
        if estimate is not None:
            from ..peers.vela import side_by_side

            metrics.update(estimate.metrics())
            layers = _builtin_rows(side_by_side(layers, estimate, tgt))
        if expected is not None:
            metrics.update(_accuracy_metrics(expected, outputs, labels))
        elif labels is not None:
            metrics.update(_labels_only(outputs, labels))

        host = self._host_timing(float_ref or qmodel, feeds, metrics["latency_ms"])
        provenance = {
            "model_sha256": qmodel.sha256, "target": tgt.name, "target_hash": tgt.content_hash(),
            "compile_options": {k: repr(v) for k, v in sorted(compile_options.items())},
            "compiler_version": _compiler_version(), "cache_key": getattr(compiled, "cache_key", None),
        }
        if float_ref is not None:
            provenance["float_model_sha256"] = float_ref.sha256

        def diagnose():
            return _per_layer_accuracy(float_ref, qmodel, feeds, execution)

        result = NpuResult(tgt.name, outputs, metrics, expected, host, layers, execution, compiled)
        self._record(tgt.name, result, provenance, diagnose)
        return result

    def _vela_estimate(self, model: _Model, target):
        """Vela's estimate of a .tflite model on ``target`` (once per model and target), when
        ``--npu-vela`` is on or the test's budget names a vela_ metric; else None."""
        from .markers import VELA_PREFIX

        asked = self.context is not None and any(k.startswith(VELA_PREFIX) for k in self.context.budget.limits)
        is_tflite = model.blob[4:8] == b"TFL3"
        if not (asked or (self.options.vela and is_tflite and target.vela_accelerator)):
            return None
        from ..errors import PeerError
        from ..peers import vela

        if not is_tflite:
            raise PeerError(f"{model.label}: a vela_ budget needs a .tflite model (Vela reads TFLite), "
                            "not an ONNX one")
        key = (model.sha256, target.content_hash())
        if key not in self._vela:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="pytest-npu-vela-") as scratch:
                path = Path(scratch) / "model.tflite"
                path.write_bytes(model.blob)
                self._vela[key] = vela.estimate(path, target, Path(scratch) / "out")
        return self._vela[key]

    def _record(self, target_name: str, result: NpuResult, provenance: dict, diagnose) -> None:
        context = self.context
        if context is None:       # a run in a fixture or at import: measured, not attributed
            return
        aggregate = context.per_target.setdefault(target_name, _Aggregate())
        aggregate.add(result.metrics, result.layers, provenance, result.host, diagnose)
        if context.enforce_per_run and context.budget.limits and _in_hypothesis():
            from .verdict import check_budgets

            result.breaches = check_budgets(result.metrics, context.budget.limits)
            if result.breaches:
                from .verdict import NpuBudgetExceeded

                record = self.build_record(context, target_name, aggregate)
                record.metrics, breaches = dict(result.metrics), result.breaches
                headline = ", ".join(f"{b.metric}={b.measured:.4g} (budget {b.limit:.4g})" for b in breaches)
                raise NpuBudgetExceeded(f"NPU budget exceeded on {target_name}: {headline}", breaches,
                                        render=lambda: self.failure_text(record, breaches, diagnose))

    # -- records and messages (used by the plugin after the call phase)
    def build_record(self, context: TestContext, target_name: str, aggregate: _Aggregate) -> NpuRecord:
        item = context.item
        return NpuRecord(
            nodeid=item.nodeid, name=item.name, module=item.nodeid.split("::", 1)[0], target=target_name,
            metrics=dict(aggregate.metrics), provenance=dict(aggregate.provenance),
            layers=list(aggregate.layers), budgets=dict(context.budget.limits),
            tolerances=dict(context.budget.tolerances), runs=aggregate.runs, host=dict(aggregate.host))

    def failure_text(self, record: NpuRecord, breaches: list[Breach], diagnose=None) -> str:
        from .verdict import _ACCURACY, failure_message

        rows, note = None, ""
        if diagnose is not None and any(b.metric in _ACCURACY for b in breaches):
            rows, note = diagnose()
        return failure_message(record, breaches, rows, note)

    def finish(self, context: TestContext, check_hook, body_passed: bool):
        """Aggregate the test's runs into records and collect budget + plugin breaches.

        Returns the records (breaches filled in) and a callable rendering the failure text, or None
        when nothing broke (rendering runs the per-layer diagnosis, so it happens only when shown).
        ``check_hook`` is ``item.ihook.pytest_npu_check``; every plugin's rows join the same table.
        """
        from .verdict import Breach, breach_table, check_budgets

        records, parts = [], []
        for target_name, aggregate in context.per_target.items():
            record = self.build_record(context, target_name, aggregate)
            breaches = check_budgets(record.metrics, record.budgets)
            for rows in check_hook(item=context.item, record=record):
                breaches.extend(rows or [])
            record.breaches = breaches
            records.append(record)
            if breaches:
                parts.append((record, breaches, aggregate.diagnose))
        missing = []
        if body_passed and context.budget.limits and not context.per_target:
            missing = [Breach(key, limit, float("nan"), message="the test never called npu.run")
                       for key, limit in context.budget.limits.items()]
        if not parts and not missing:
            return records, None

        def render() -> str:
            texts = [self.failure_text(record, breaches, diagnose) for record, breaches, diagnose in parts]
            if missing:
                texts.append(f"NPU budget not checked: {context.item.nodeid} has an npu_budget marker but never "
                             f"called npu.run(model, inputs, ...), so no figure was measured.\n\n"
                             f"{breach_table(missing)}")
            return "\n\n".join(texts)

        return records, render

    # -- helpers
    def _feeds(self, model: _Model, inputs) -> dict:
        import numpy as np

        from ..errors import ModelError
        from .markers import suggest

        names = model.input_names
        if isinstance(inputs, dict):
            unknown = [key for key in inputs if key not in names]
            if unknown:
                raise ModelError(f"npu.run: {model.label} has no input {unknown[0]!r}."
                                 f"{suggest(str(unknown[0]), names)} Its inputs: {', '.join(names)}.")
            missing = [name for name in names if name not in inputs]
            if missing:
                raise ModelError(f"npu.run: no value for input {missing[0]!r} of {model.label}.")
            feeds = dict(inputs)
        else:
            if len(names) != 1:
                raise ModelError(f"npu.run: {model.label} has {len(names)} inputs ({', '.join(names)}); "
                                 f"pass a dict name -> array.")
            feeds = {names[0]: inputs}
        batch = None
        for name, value in feeds.items():
            try:
                array = np.asarray(value)
            except ValueError as exc:
                raise ModelError(f"npu.run: input {name!r} of {model.label} is not an array of one shape "
                                 f"({exc}); pass a numeric array, or an (x, labels) pair") from None
            if array.dtype.kind not in "biuf":
                raise ModelError(f"npu.run: input {name!r} of {model.label} holds {array.dtype} values; "
                                 f"pass a numeric array.")
            integer_input, rank = model.input_spec(name)
            if not (integer_input and array.dtype.kind in "iu"):   # int8 inputs (tf2onnx) stay integers
                array = array.astype(np.float32)
            if rank and array.ndim != rank:
                raise ModelError(f"npu.run: input {name!r} of {model.label} has rank {array.ndim} "
                                 f"(shape {array.shape}); the model expects rank {rank} with the batch first.")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ModelError(f"npu.run: input {name!r} contains NaN or infinity; the NPU quantises "
                                 f"inputs, so give finite values.")
            if batch is not None and array.shape[0] != batch:
                raise ModelError(f"npu.run: inputs disagree on the batch size ({batch} vs {array.shape[0]} "
                                 f"for {name!r}).")
            batch = array.shape[0]
            feeds[name] = array
        return feeds

    def _run_batched(self, compiled, feeds: dict):
        """Emulate in chunks of --npu-batch (each sample owns an emulated DRAM image)."""
        import numpy as np

        total = next(iter(feeds.values())).shape[0]
        step = max(1, self.options.batch)
        chunks, first = [], None
        for start in range(0, total, step):
            execution = compiled.run({k: v[start:start + step] for k, v in feeds.items()})
            first = first or execution
            chunks.append(execution.outputs)
        outputs = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        return outputs, first

    def _float_reference(self, qmodel: _Model, float_model, reference) -> _Model | None:
        if isinstance(reference, str) and reference == "float":
            if float_model is not None:
                return _Model.load(float_model, "npu.run float model")
            if qmodel.is_tflite:
                from ..errors import ModelError

                raise ModelError(
                    f"npu.run(reference='float'): {qmodel.label} is an integer TFLite model and carries no "
                    f"float model. Pass the pair npu.run((model.tflite, float_model.onnx), ...) with a float "
                    f"ONNX model taking the same input layout, reference=<the .tflite itself> to compare "
                    f"with LiteRT's reference kernels, or reference=<expected output arrays>.")
            if not qmodel.is_quantized:
                return qmodel
            from ..errors import ModelError

            raise ModelError(
                f"npu.run(reference='float'): {qmodel.label} is quantised and carries no float model. "
                f"Pass the pair npu.run((quantized, float_model), ...), or reference=<float model path or "
                f"ModelProto>, or reference=<expected output arrays>.")
        if isinstance(reference, str) and not Path(reference).suffix:
            from ..errors import ModelError

            raise ModelError(f"npu.run: reference={reference!r} is not understood; use 'float', a float "
                             f"model (.onnx path / ModelProto / bytes), or expected output arrays.")
        if _is_model_like(reference):
            return _Model.load(reference, "npu.run reference")
        return _Model.load(float_model, "npu.run float model") if float_model is not None else None

    def _reference_outputs(self, float_ref: _Model | None, reference, feeds, outputs) -> dict | None:
        import numpy as np

        from ..errors import ModelError

        if reference is None:
            return None
        if float_ref is not None and float_ref.is_tflite:
            return _match_outputs(_litert_outputs(float_ref, feeds), outputs, float_ref.label)
        if float_ref is not None:
            session = self._session(float_ref)
            names = [out.name for out in session.get_outputs()]
            values = session.run(names, {k: v for k, v in feeds.items()
                                         if k in {i.name for i in session.get_inputs()}})
            produced = dict(zip(names, values))
            return _match_outputs(produced, outputs, float_ref.label)
        if isinstance(reference, dict):
            expected = {name: np.asarray(value, dtype=np.float32) for name, value in reference.items()}
            return _match_outputs(expected, outputs, "reference=")
        array = np.asarray(reference, dtype=np.float32)
        if len(outputs) != 1:
            raise ModelError(f"npu.run: the model has {len(outputs)} outputs; pass reference= as a dict "
                             f"name -> array ({', '.join(outputs)}).")
        return _match_outputs({next(iter(outputs)): array}, outputs, "reference=")

    def _session(self, model: _Model, *, timing: bool = False):
        """An onnxruntime session for ``model``: the reference (``timing=False``) or the host timing.

        The reference computes the graph as written, one thread, no graph optimisations: the fused
        and re-laid-out kernels optimisation picks depend on the CPU (NCHWc blocks of 16 floats on
        AVX-512, 8 on AVX2) and moved the accuracy figures by up to 2.8e-5 relative against the
        unoptimised graph (``benchmarks/float_drift.py``). Host timing measures what a user's host
        would run, so it keeps onnxruntime's optimisations.
        """
        key = (model.sha256, timing)
        if key not in self._sessions:
            import onnxruntime as ort

            from ..errors import ModelError

            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 1       # fair and quiet on shared CI cores
            options.inter_op_num_threads = 1
            if not timing:
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                options.use_deterministic_compute = True
            try:
                self._sessions[key] = ort.InferenceSession(
                    model.source, options, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise ModelError(f"{model.label}: onnxruntime cannot load the reference model ({exc}).") \
                    from None
        return self._sessions[key]

    def _host_timing(self, model: _Model, feeds: dict, npu_latency_ms: float) -> dict:
        """Median host wall time of one inference of the float model (informational, never gated)."""
        if self.options.host_runs <= 0:
            return {}
        if model.sha256 not in self._host_ms:
            import statistics
            import time

            if model.is_tflite:
                invoke = _litert_invoker(model, feeds)
            else:
                session = self._session(model, timing=True)
                wanted = {i.name for i in session.get_inputs()}
                single = {k: v[:1] for k, v in feeds.items() if k in wanted}

                def invoke():
                    session.run(None, single)
            invoke()                                               # warm-up: allocations, kernels
            times = []
            for _ in range(self.options.host_runs):
                start = time.perf_counter()
                invoke()
                times.append((time.perf_counter() - start) * 1e3)
            self._host_ms[model.sha256] = statistics.median(times)
        host_ms = self._host_ms[model.sha256]
        return {"host_ms": host_ms, "speedup": host_ms / npu_latency_ms if npu_latency_ms > 0 else None,
                "host_model": "float" if not model.is_quantized else "quantized"}


def _litert_interpreter(model: _Model, **options):
    from ..errors import ModelError

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ModelError(f"{model.label}: running a .tflite model outside the emulator needs LiteRT; "
                         "pip install ai-edge-litert (or pass --npu-host-runs 0 and no .tflite reference)") from None
    return Interpreter(model_content=model.blob, **options)


def _litert_outputs(model: _Model, feeds: dict) -> dict:
    """A .tflite reference: LiteRT's reference kernels (BUILTIN_REF, the runtime TFLite Micro and
    Ethos-U follow) on the same inputs, one sample at a time, outputs dequantised like run()'s."""
    import numpy as np
    from ai_edge_litert.interpreter import OpResolverType

    it = _litert_interpreter(model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    graph = model.tflite_graph
    ins = dict(zip(graph.inputs, it.get_input_details()))
    outs = dict(zip(graph.outputs, it.get_output_details()))
    batch = len(next(iter(feeds.values())))
    results: dict[str, list] = {name: [] for name in outs}
    for k in range(batch):
        for name, detail in ins.items():
            x = np.asarray(feeds[name][k:k + 1])
            boundary = graph.boundary(name)
            if x.dtype.kind == "f" and boundary.quant is not None:
                x = boundary.quant.quantize(x)
            it.set_tensor(detail["index"], x.astype(detail["dtype"]).reshape(detail["shape"]))
        it.invoke()
        for name, detail in outs.items():
            results[name].append(it.get_tensor(detail["index"]))
    expected = {}
    for name, values in results.items():
        y = np.concatenate(values)
        quant = graph.boundary(name).quant
        expected[name] = quant.dequantize(y) if quant is not None else y.astype(np.float32)
    return expected


def _litert_invoker(model: _Model, feeds: dict):
    """One inference of a .tflite model on LiteRT's default (optimised) kernels, for host timing:
    the first sample of each input, quantised with the input's own parameters."""
    import numpy as np

    interpreter = _litert_interpreter(model, num_threads=1)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    graph = model.tflite_graph
    values = []
    for detail, name in zip(details, graph.inputs):
        x = np.asarray(feeds[name][:1])
        boundary = graph.boundary(name)
        if x.dtype.kind == "f" and boundary.quant is not None:
            x = boundary.quant.quantize(x)
        values.append((detail["index"], x.astype(detail["dtype"]).reshape(detail["shape"])))

    def invoke():
        for index, x in values:
            interpreter.set_tensor(index, x)
        interpreter.invoke()
    return invoke


def _in_hypothesis() -> bool:
    """True while a Hypothesis example runs: breaches then raise per example so it can shrink."""
    import sys

    if "hypothesis" not in sys.modules:
        return False
    from hypothesis import currently_in_test_context

    return currently_in_test_context()


def _is_model_like(value) -> bool:
    return isinstance(value, (str, os.PathLike, bytes, bytearray)) or hasattr(value, "SerializeToString")


def _looks_like_xy(inputs) -> bool:
    """An ``(x, labels)`` tuple as the reference-model data accessors return it."""
    if not isinstance(inputs, tuple) or len(inputs) != 2:
        return False
    labels = inputs[1]
    return getattr(labels, "ndim", None) == 1 and getattr(getattr(labels, "dtype", None), "kind", "") in "iu"


def _match_outputs(expected: dict, outputs: dict, source: str) -> dict:
    """Pair reference outputs with NPU outputs by name, else by position when the counts agree."""
    from ..errors import ModelError

    if set(expected) == set(outputs):
        pairs = {name: expected[name] for name in outputs}
    elif len(expected) == len(outputs):
        pairs = dict(zip(outputs, expected.values()))
    else:
        raise ModelError(f"npu.run: {source} gives outputs {sorted(expected)} but the NPU program has "
                         f"{sorted(outputs)}; pass a reference with the same outputs.")
    for name, value in pairs.items():
        if value.shape != outputs[name].shape:
            raise ModelError(f"npu.run: {source} output {name!r} has shape {value.shape} but the NPU "
                             f"produced {outputs[name].shape}.")
    return pairs


def _cost_metrics(summary, compiled, model: _Model) -> dict[str, float]:
    program = getattr(compiled, "program", None)
    constants = getattr(program, "constants", None)
    model_bytes = len(constants) if isinstance(constants, (bytes, bytearray)) else len(model.blob)
    return {
        "latency_ms": float(summary.latency_ms), "cycles": float(summary.cycles),
        "energy_mj": float(summary.energy_mj), "macs": float(summary.macs),
        "sram_kib": summary.sram_peak_bytes / 1024,
        "dram_kib": (summary.dram_read_bytes + summary.dram_write_bytes) / 1024,
        "model_kib": model_bytes / 1024,
    }


def _accuracy_metrics(expected: dict, outputs: dict, labels) -> dict[str, float]:
    """Worst figure over the outputs; top-1 on the first output (the classifier's logits)."""
    import numpy as np

    from .. import metrics
    from .markers import METRICS

    result: dict[str, float] = {}
    for name, reference in expected.items():
        figures = metrics.compare(reference, outputs[name])
        for key in ("mse", "max_abs_err", "sqnr_db", "cosine"):
            value = float(figures[key])
            result[key] = METRICS[key].worse(result[key], value) if key in result else value
    if labels is not None:
        first = next(iter(expected))
        labels = np.asarray(labels)
        npu_top1 = float(metrics.top1(outputs[first], labels))
        result["top1"] = npu_top1
        result["top1_drop"] = float(metrics.top1(expected[first], labels)) - npu_top1
    return result


def _labels_only(outputs: dict, labels) -> dict[str, float]:
    import numpy as np

    from .. import metrics

    return {"top1": float(metrics.top1(next(iter(outputs.values())), np.asarray(labels)))}


def _builtin_rows(rows) -> list[dict]:
    """Layer rows with builtin values only (they travel through JSON and xdist)."""
    return json.loads(json.dumps(list(rows or []), default=_builtin))


def _compiler_version() -> str:
    try:
        from .. import compiler

        return str(getattr(compiler, "__version__", None) or _package_version())
    except ImportError:
        return _package_version()


def _package_version() -> str:
    from .. import __version__

    return __version__


def _per_layer_accuracy(float_ref: _Model | None, qmodel: _Model, feeds: dict, execution, count: int = 3):
    """The ``count`` activations with the lowest SQNR against the float model, and how they were got.

    Uses the emulator's intermediates when the compiler exposes them (``execution.extra
    ["intermediates"]``); otherwise runs the QDQ model in onnxruntime with every activation exposed
    (ORT's QDQ simulation matches the NPU's integer results to about one LSB).
    """
    if float_ref is None or float_ref.sha256 == qmodel.sha256:
        return None, "not available: no float reference model (pass a (quantized, float_model) pair)"
    if qmodel.is_tflite:
        return None, ("not available for a .tflite model (the per-layer comparison maps ONNX activations); "
                      "pytest-npu inspect MODEL --target T shows its layers")
    from .diagnose import lowest_sqnr_layers

    return lowest_sqnr_layers(float_ref, qmodel, feeds, execution.extra.get("intermediates"), count)
