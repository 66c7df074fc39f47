"""Every reference model's int8 QDQ export, compiled for every built-in target, vs onnxruntime.

The reference is onnxruntime running the same QDQ model with graph optimisations off (``ort_run``):
its fused x86 int8 kernels drift from the QDQ semantics the NPU implements.  Two views:

* whole model: the brief's criterion (<= 1 LSB on >= 99 % of outputs, never > 2 LSB, same clear
  top-1).  Deep models with seeded (untrained) weights miss it: a 1-LSB rounding difference in one
  layer is amplified by every later layer's gain.  Those pairs carry the tolerance *measured* on
  this batch, with the reason, in ``DRIFT`` -- never a silently loosened bound.
* layer by layer: each quantised layer is cut out of the model (``onnx.utils.Extractor``) and fed
  onnxruntime's own float input to it, so no earlier difference reaches it.  Every layer of every
  model must then be within 1 LSB everywhere: this is what shows the whole-model drift is
  accumulation, not a wrong kernel.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import pytest
from models import Builder, assert_matches_ort, lsb_diff, ort_run, quantize

import pytest_npu
import reference_models
from pytest_npu import targets

logging.getLogger().setLevel(logging.ERROR)      # onnxruntime.quantization's pre-processing advice

TARGETS = targets.available()
BATCH = 8


@dataclass(frozen=True)
class Tolerance:
    within_1lsb: float     # fraction of output elements within 1 LSB, at least
    max_lsb: int           # largest difference allowed
    why: str


STRICT = Tolerance(0.99, 2, "the differential criterion")
_DOUBLE = ("double rounding (gemmlowp) differs from ORT by 1 LSB on ~0.1-11 % of each layer's outputs "
           "(all within 1 LSB per layer); the next layers amplify it")
_TFLITE = ("TFLite's reference semantics (the Ethos-U targets' rounding = \"tflite\": double-rounding "
           "MultiplyByQuantizedMultiplier, TFLite's MEAN for global pools) differ from ORT's float32 "
           "requantisation on near-ties, within 1 LSB per layer (test_each_layer_...); the seeded "
           "(untrained, gain > 1) later layers amplify them, as for edge-3core's double rounding")
# Measured on test_data()[:8] (deterministic: seeded weights, built in float64 so every CPU gets the
# same bytes, and seeded inputs); the figure in the comment is what ran when this table was written.
# Before the Ethos-U targets followed TFLite (TOSA single rounding) resnet8 was 78/80 within 1 LSB
# (max 3) on them and ds_cnn and mobilenet_v1 met the strict criterion; they now drift as
# edge-3core does, and the dense autoencoder went from the criterion to bit-exact with ORT
# (LiteRT's double-precision fully-connected rescale is ORT's float one).
DRIFT = {
    ("resnet8", "u55-128"): Tolerance(0.65, 5, f"9 layers: 56/80 within 1 LSB, max 4; {_TFLITE}"),
    ("resnet8", "u55-256"): Tolerance(0.65, 5, f"9 layers: 56/80 within 1 LSB, max 4; {_TFLITE}"),
    ("resnet8", "u65-512"): Tolerance(0.65, 5, f"9 layers: 56/80 within 1 LSB, max 4; {_TFLITE}"),
    ("resnet8", "edge-3core"): Tolerance(0.65, 5, f"10 layers (global pool on the NPU): 56/80 within 1 LSB, max 4; {_DOUBLE}"),
    ("ds_cnn", "u55-128"): Tolerance(0.6, 6, f"9 layers: 64/96 within 1 LSB, max 5; {_TFLITE}"),
    ("ds_cnn", "u55-256"): Tolerance(0.6, 6, f"9 layers: 64/96 within 1 LSB, max 5; {_TFLITE}"),
    ("ds_cnn", "u65-512"): Tolerance(0.6, 6, f"9 layers: 64/96 within 1 LSB, max 5; {_TFLITE}"),
    ("ds_cnn", "edge-3core"): Tolerance(0.6, 6, f"9 layers: 64/96 within 1 LSB, max 5; {_DOUBLE}"),
    ("mobilenet_v1", "u55-128"): Tolerance(0.0625, 60, f"28 layers: 2/16 within 1 LSB, max 54; {_TFLITE}"),
    ("mobilenet_v1", "u55-256"): Tolerance(0.0625, 60, f"28 layers: 2/16 within 1 LSB, max 54; {_TFLITE}"),
    ("mobilenet_v1", "u65-512"): Tolerance(0.0625, 60, f"28 layers: 2/16 within 1 LSB, max 54; {_TFLITE}"),
    ("mobilenet_v1", "edge-3core"): Tolerance(0.0625, 60, f"28 layers: 2/16 within 1 LSB, max 55; {_DOUBLE}"),
}
BROKEN: dict[tuple[str, str], str] = {}


def _cases():
    for model in reference_models.NAMES:
        for target in TARGETS:
            marks = [pytest.mark.xfail(strict=True, reason=BROKEN[model, target])] if (model, target) in BROKEN \
                else []
            yield pytest.param(model, target, marks=marks, id=f"{model}-{target}")


# ---- models and references, built once per session and shared by the xdist workers ---------------
_shared_dir: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _share_exports(tmp_path_factory):
    """Export/quantise into one directory for all workers of this run (the xdist recipe)."""
    global _shared_dir
    base = tmp_path_factory.getbasetemp()
    _shared_dir = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "reference-qdq"
    _shared_dir.mkdir(exist_ok=True)


@cache
def qdq(name: str) -> onnx.ModelProto:
    """The int8 QDQ model; the first worker to ask exports it, the other one reads the file."""
    assert _shared_dir is not None
    done = _shared_dir / f"{name}.int8.onnx"
    with open(_shared_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            path = reference_models.onnx_for(name, "int8", _shared_dir / f"{name}-{os.getpid()}")
            tmp = done.with_suffix(".tmp")
            tmp.write_bytes(Path(path).read_bytes())
            tmp.replace(done)
    return onnx.load(str(done))


@cache
def batch(name: str) -> np.ndarray:
    data = reference_models.get(name).test_data()
    return (data[0] if isinstance(data, tuple) else data)[:BATCH]     # digits returns (x, labels)


@cache
def reference(name: str) -> np.ndarray:
    return ort_run(qdq(name), batch(name))


@cache
def compiled(name: str, target: str):
    return pytest_npu.compile(qdq(name), target)


def _output_scale(cm) -> tuple[str, float]:
    (name,) = cm.program.outputs
    return name, float(cm.graph.output_quant[name].scale)


# ---- whole model --------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "target"), list(_cases()))
def test_whole_model_matches_onnxruntime(model, target):
    cm = compiled(model, target)
    out_name, scale = _output_scale(cm)
    out, ref = cm.run(batch(model)).outputs[out_name], reference(model)
    tol = DRIFT.get((model, target))
    if tol is None:
        assert_matches_ort(out, ref, scale)
        return
    diff = lsb_diff(out, ref, scale)
    within = float(np.mean(diff <= 1))
    assert within >= tol.within_1lsb and diff.max() <= tol.max_lsb, (
        f"{model} on {target}: {within:.2%} within 1 LSB, max {diff.max()} LSB; measured tolerance was "
        f">= {tol.within_1lsb:.2%}, <= {tol.max_lsb} LSB ({tol.why})")
    assert within < STRICT.within_1lsb or diff.max() > STRICT.max_lsb, (
        f"{model} on {target} now meets the strict criterion: remove its DRIFT entry")
    if out.ndim == 2 and out.shape[1] > 1:       # a classifier: top-1 agrees wherever drift cannot flip it
        ranked = np.sort(ref, axis=1)
        clear = (ranked[:, -1] - ranked[:, -2]) > 2 * tol.max_lsb * scale
        assert (out.argmax(1) == ref.argmax(1))[clear].all(), f"{model} on {target}: top-1 differs"


# ---- layer by layer -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    name: str                  # the ONNX node whose quantised output this is
    inputs: tuple[str, ...]    # float tensors onnxruntime quantises on the way in
    output: str                # the dequantised output


@cache
def layers(name: str) -> tuple[Layer, ...]:
    """One unit per activation QuantizeLinear: from the float inputs of the Q nodes feeding it."""
    model = qdq(name)
    constants = {i.name for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    quantizers = {n.output[0]: n for n in model.graph.node
                  if n.op_type == "QuantizeLinear" and n.input[0] not in constants}
    dequant_of = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    graph_input = model.graph.input[0].name
    units = []
    for q_out, q in quantizers.items():
        if q.input[0] == graph_input or q_out not in dequant_of:
            continue
        inputs, stack, seen = set(), [q.input[0]], set()
        while stack:                       # walk back to the previous quantised activations
            tensor = stack.pop()
            if tensor in seen or tensor in constants or tensor not in producer:
                continue
            seen.add(tensor)
            node = producer[tensor]
            if node.op_type == "DequantizeLinear" and node.input[0] in quantizers:
                inputs.add(quantizers[node.input[0]].input[0])
            else:
                stack.extend(node.input)
        units.append(Layer(producer[q.input[0]].name, tuple(sorted(inputs)), dequant_of[q_out]))
    return tuple(units)


@cache
def intermediates(name: str) -> dict[str, np.ndarray]:
    """onnxruntime's float value of every tensor a layer takes as input, on the test batch."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq(name))
    wanted = sorted({t for layer in layers(name) for t in layer.inputs} - {o.name for o in model.graph.output})
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in wanted)
    sess = _qdq_session(model)
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {model.graph.input[0].name:
                                                                             batch(name)})))
    values[model.graph.input[0].name] = batch(name)
    return values


@cache
def layer_model(name: str, layer: Layer) -> onnx.ModelProto:
    return onnx.utils.Extractor(onnx.shape_inference.infer_shapes(qdq(name))).extract_model(
        list(layer.inputs), [layer.output])


@pytest.mark.parametrize(("model", "target"), list(_cases()))
def test_each_layer_matches_onnxruntime_given_its_inputs(model, target):
    values = intermediates(model)
    units = layers(model)
    assert len(units) >= 3, f"{model}: only {len(units)} quantised layers found"
    worst = []
    for layer in units:
        sub = layer_model(model, layer)
        feed = {t: values[t] for t in layer.inputs}
        cm = pytest_npu.compile(sub, target)
        out_name, scale = _output_scale(cm)
        out = cm.run(feed if len(feed) > 1 else next(iter(feed.values()))).outputs[out_name]
        diff = lsb_diff(out, ort_run_multi(sub, feed), scale)
        worst.append((int(diff.max()), float(np.mean(diff == 0)), layer.name))
    off = [w for w in worst if w[0] > 1]
    assert not off, f"{model} on {target}: layers more than 1 LSB from ORT given ORT's inputs: {off}"


def ort_run_multi(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    """``ort_run`` for a model with several inputs (a residual add, a matmul of two activations)."""
    if len(feed) == 1:
        return ort_run(model, next(iter(feed.values())))
    return _qdq_session(model).run(None, feed)[0]


def _qdq_session(model: onnx.ModelProto):
    """An onnxruntime session with the QDQ semantics ``ort_run`` uses (graph optimisations off)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


# ---- what runs where ----------------------------------------------------------------------------
CNNS = [n for n in reference_models.NAMES if n != "transformer_block"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", CNNS)
def test_cnn_layers_all_run_on_the_npu(model, target):
    """Every CNN layer runs on the NPU, including global pools written as AveragePool(k=8, s=8),
    whose stride never applies because the window covers the whole input."""
    cm = compiled(model, target)
    assert cm.unsupported() == []


@pytest.mark.parametrize("target", TARGETS)
def test_transformer_block_falls_back_to_host_and_uses_a_lut(target):
    cm = compiled("transformer_block", target)
    host = cm.unsupported()
    assert sorted(op for _, op, _ in host) == ["layernorm", "layernorm", "matmul", "matmul", "softmax"]
    for _, op, reason in host:
        if op == "layernorm":
            assert reason == f"{op} is not in {target}'s instruction set (no NPU instruction computes it)"
        elif op == "softmax":     # attention rows lie along W of the NCHW-as-NHWC activation
            assert reason == (f"softmax over axis 2 of a rank-4 tensor: {target}'s SOFTMAX normalises the "
                              "last (channel) axis")
        elif cm.target.supports("matmul"):      # activation x activation with a batch (head) axis
            assert reason == "batched matmul (the NPU multiplies 2-D operands)"
        else:
            assert reason == f"matmul is not in {target}'s instruction set"
    luts = {i.layer for i in cm.program.instructions if i.opcode == "LUT"}     # one per core that runs it
    assert luts == {"node_gelu"}, luts
    hosts = {i.layer for i in cm.program.instructions if i.opcode == "HOST"}
    assert hosts == {layer for layer, _, _ in host}
    out_name, scale = _output_scale(cm)
    assert_matches_ort(cm.run(batch("transformer_block")).outputs[out_name], reference("transformer_block"),
                       scale)


def test_pool_split_across_cores_keeps_ifm_and_ofm_channels_equal():
    """Regression: a POOL split over cores by output channel reads the same channels of its ifm."""
    b = Builder((1, 128, 3, 3), seed=1).conv(128, k=1, pad=0).pool("AveragePool", k=3, stride=3)
    q = quantize(b.model(), b.input_shape)
    x = np.random.default_rng(0).normal(0, 1, (2, *b.input_shape[1:])).astype(np.float32)
    cm = pytest_npu.compile(q, "u65-512")
    out_name, scale = _output_scale(cm)
    assert_matches_ort(cm.run(x).outputs[out_name], ort_run(q, x), scale)
