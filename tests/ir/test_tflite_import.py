"""``ir.from_tflite`` on bad input: every malformed or unsupported ``.tflite`` is a ModelError that
names the file, the operator and its tensor and says what to do -- never a foreign exception, never
a guessed scale. And every entry point that takes a model takes a ``.tflite``: ``compile`` by
content (bytes) or path, ``pytest-npu inspect``/``asm``, and the ``npu`` fixture."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import pytest_npu
import pytest_npu.compiler.api  # noqa: F401  (pytester's in-process runs drop modules first imported
import pytest_npu.harness.session  # noqa: F401  inside them: a re-imported loader's Target would not
import pytest_npu.metrics  # noqa: F401  be a Target to the compiler; import the stages once here)
import pytest_npu.npu.emulator  # noqa: F401
import pytest_npu.targets  # noqa: F401
from pytest_npu import cli
from pytest_npu.errors import ModelError
from pytest_npu.ir import from_tflite, model_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "npu"))
from litert_ops import ACT, OP, OPTIONS, Op, S, T, flatbuffers, run_reference, tflite_graph, tflite_model  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tflite"


def conv_model(dtype: str = "int8", quantised: bool = True, channels: int = 2, multiplier: int = 1,
               depthwise: bool = False) -> bytes:
    q = (lambda s, z=0: dict(scale=s, zero_point=z)) if quantised else (lambda s, z=0: {})
    w_dtype = "int8" if quantised else dtype
    if depthwise:
        w = np.ones((1, 3, 3, channels * multiplier), w_dtype)
        opts = S.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = multiplier
        op, otype, cout = OP.DEPTHWISE_CONV_2D, OPTIONS.DepthwiseConv2DOptions, channels * multiplier
    else:
        w = np.ones((4, 3, 3, channels), w_dtype)
        opts = S.Conv2DOptionsT()
        op, otype, cout = OP.CONV_2D, OPTIONS.Conv2DOptions, 4
    opts.padding, opts.strideW, opts.strideH = S.Padding.SAME, 1, 1
    opts.fusedActivationFunction = ACT["none"]
    b_dtype = "int32" if quantised else dtype
    return tflite_model(op, [T((1, 5, 5, channels), dtype, **q(0.05, 3)), T(w.shape, w_dtype, **q(0.01), data=w),
                             T((cout,), b_dtype, **q(0.0005), data=np.zeros(cout, b_dtype))],
                        [T((1, 5, 5, cout), dtype, **q(0.1, -2))], otype, opts)


def mutate(model: bytes, change) -> bytes:
    """Unpack with the schema's object API, let ``change`` edit it, pack again."""
    obj = S.ModelT.InitFromPackedBuf(model, 0)
    change(obj)
    builder = flatbuffers.Builder(1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _custom(m):
    m.operatorCodes[0].builtinCode = S.BuiltinOperator.CUSTOM
    m.operatorCodes[0].deprecatedBuiltinCode = S.BuiltinOperator.CUSTOM
    m.operatorCodes[0].customCode = "MyFancyOp"


def _unsupported(m):
    m.operatorCodes[0].builtinCode = m.operatorCodes[0].deprecatedBuiltinCode = S.BuiltinOperator.ABS


def _two_subgraphs(m):
    m.subgraphs.append(m.subgraphs[0])


def _no_scale(m):
    m.subgraphs[0].tensors[0].quantization = None


def _dynamic(m):
    m.subgraphs[0].tensors[0].shapeSignature = [1, -1, 5, 2]


def _bad_tensor_index(m):
    m.subgraphs[0].operators[0].outputs = [99]


def _bad_opcode(m):
    m.subgraphs[0].operators[0].opcodeIndex = 7


def _batch_of_four(m):
    m.subgraphs[0].tensors[0].shape = [4, 5, 5, 2]
    m.subgraphs[0].tensors[3].shape = [4, 5, 5, 4]


def _zero_scale(m):
    m.subgraphs[0].tensors[3].quantization.scale = [0.0]


def concat_relu_model() -> bytes:
    opts = S.ConcatenationOptionsT()
    opts.axis, opts.fusedActivationFunction = 3, ACT["relu"]
    return tflite_model(OP.CONCATENATION, [T((1, 2, 2, 2), "int8", 0.1, 5), T((1, 2, 2, 3), "int8", 0.1, 5)],
                        [T((1, 2, 2, 5), "int8", 0.1, 5)], OPTIONS.ConcatenationOptions, opts)


def concat_rescaling_model() -> bytes:
    opts = S.ConcatenationOptionsT()
    opts.axis = 3
    return tflite_model(OP.CONCATENATION, [T((1, 2, 2, 2), "int16", 0.001), T((1, 2, 2, 3), "int16", 0.002)],
                        [T((1, 2, 2, 5), "int16", 0.002)], OPTIONS.ConcatenationOptions, opts)


BAD = {
    "not a flatbuffer": (b"\x00" * 4 + b"XXXX" + b"hello", r"not a TFLite flatbuffer \(no 'TFL3'"),
    "empty": (b"", r"the file is empty"),
    "truncated": (conv_model()[:200], r"truncated|corrupt"),
    "custom operator": (mutate(conv_model(), _custom), r"operator 0 is the custom operator 'MyFancyOp' -> 't3'"),
    "unsupported builtin": (mutate(conv_model(), _unsupported), r"operator 0 \(ABS\) -> 't3' is not supported"),
    "two subgraphs": (mutate(conv_model(), _two_subgraphs), r"2 subgraphs"),
    "float convolution": (conv_model("float32", quantised=False), r"operator 0 \(CONV_2D\) -> 't3' uses the float32 tensor 't0'"),
    "activation without a scale": (mutate(conv_model(), _no_scale), r"uses 't0' \(int8\) without a scale"),
    "dynamic shape": (mutate(conv_model(), _dynamic), r"tensor 't0' has dynamic dimensions \[1, -1, 5, 2\]"),
    "tensor index out of range": (mutate(conv_model(), _bad_tensor_index), r"refers to tensor 99"),
    "opcode out of range": (mutate(conv_model(), _bad_opcode), r"opcode 7"),
    "zero scale": (mutate(conv_model(), _zero_scale), r"tensor 't3' has a scale that is not a positive"),
    # the IR's images have batch 1: a fixed batch of 4 used to reach the image operators as data
    # (an AVERAGE_POOL_2D then computed wrong numbers silently)
    "fixed batch of 4": (mutate(conv_model(), _batch_of_four),
                         r"operator 0 \(CONV_2D\) -> 't3' uses 't0' of shape \[4, 5, 5, 2\], a batch of 4"),
    # LiteRT's int16 kernel copies the integers (its int8 one refuses): rescaling was 16,295 LSB off
    "concatenation of differently quantised operands": (
        concat_rescaling_model(), r"operator 0 \(CONCATENATION\) -> 't2' moves 't0' into 't2' with different quantisation"),
    # LiteRT refuses it in Prepare; the IR's concat has no clamp, so it must not be dropped silently
    "concatenation with a fused activation": (concat_relu_model(),
                                              r"operator 0 \(CONCATENATION\) -> 't2' fuses activation RELU"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_is_a_model_error_naming_the_culprit(name, tmp_path):
    data, message = BAD[name]
    with pytest.raises(ModelError, match=message):
        from_tflite(data)
    path = tmp_path / "bad.tflite"              # through compile(), by path: the file is named
    path.write_bytes(data)
    with pytest.raises(ModelError, match=r"bad\.tflite"):
        pytest_npu.compile(path, "u55-256")


def test_a_depthwise_multiplier_on_one_input_channel_is_a_convolution():
    graph = from_tflite(conv_model(channels=1, multiplier=3, depthwise=True))
    (node,) = graph.nodes
    assert node.op == "conv2d" and graph.tensors[node.inputs[1]].shape == (3, 3, 1, 3)


def test_format_is_told_by_content_then_suffix(tmp_path):
    model = conv_model()
    odd_name = tmp_path / "model.bin"
    odd_name.write_bytes(model)
    assert model_format(model) == model_format(odd_name) == "tflite"
    assert model_format(tmp_path / "missing.tflite") == "tflite"
    assert model_format(b"\x08\x07") == "onnx"
    assert pytest_npu.compile(odd_name, "u55-256").unsupported() == []


def test_inspect_and_asm_take_a_tflite_model(capsys):
    path = FIXTURES / "ds_cnn.tflite"
    assert cli.main(["inspect", str(path), "--target", "u55-256"]) == 0
    out = capsys.readouterr().out
    assert "depthwise_conv_2d_1" in out and "run on the host: (none)" in out
    assert cli.main(["asm", str(path), "--target", "u55-256"]) == 0
    assert "CONV2D" in capsys.readouterr().out


def test_the_npu_fixture_runs_a_tflite_model_with_a_budget(pytester):
    model = FIXTURES / "resnet8.tflite"
    pytester.makepyfile(f"""
        import numpy as np
        import pytest

        @pytest.mark.npu_budget(latency_ms=5, cycles=10**7)
        def test_port(npu):
            x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
            result = npu.run({str(model)!r}, x, target="u55-256")
            (out,) = result.outputs.values()
            assert out.shape == (2, 10) and out.dtype == np.float32
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--npu-no-baseline", "--npu-host-runs", "0")
    result.assert_outcomes(passed=1)


def test_the_npu_fixture_compares_a_tflite_model_with_litert(pytester):
    """reference=<the .tflite>: LiteRT's reference kernels on the same inputs are the oracle, so
    on a TFLite-rounding target the error is exactly zero, and a budget can say so."""
    model = FIXTURES / "ds_cnn.tflite"
    pytester.makepyfile(f"""
        import numpy as np
        import pytest

        @pytest.mark.npu_budget(mse=0.0, max_abs_err=0.0)
        def test_port(npu):
            x = np.random.default_rng(1).random((4, 49, 10, 1), dtype=np.float32)
            result = npu.run({str(model)!r}, x, reference={str(model)!r}, target="u55-256")
            assert result.metrics["mse"] == 0.0
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--npu-no-baseline", "--npu-host-runs", "0")
    result.assert_outcomes(passed=1)


def float_edge_model(seed: int) -> tuple[bytes, float]:
    """float32 -> QUANTIZE -> CONV_2D (RELU6, SAME) -> AVERAGE_POOL_2D -> RESHAPE ->
    FULLY_CONNECTED -> SOFTMAX -> DEQUANTIZE -> float32, as a converter writes a model whose
    inference_input/output_type stay float; and the input scale."""
    rng = np.random.default_rng(seed)
    s_in, z_in = 0.5, int(rng.integers(-20, 20))
    s_w = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8)
    fw = rng.integers(-127, 128, (3, 16)).astype(np.int8)
    s_c, z_c = float(np.float32(0.05)), -128
    tensors = [T((1, 4, 4, 2), "float32"), T((1, 4, 4, 2), "int8", s_in, z_in),
               T(w.shape, "int8", s_w, 0, w), T((4,), "int32", np.float32(s_in) * s_w, 0,
                                                rng.integers(-500, 500, 4).astype(np.int32)),
               T((1, 4, 4, 4), "int8", s_c, z_c), T((1, 2, 2, 4), "int8", s_c, z_c),
               T((1, 16), "int8", s_c, z_c), T(fw.shape, "int8", 0.01, 0, fw),
               T((3,), "int32", np.float32(s_c) * np.float32(0.01), 0, np.array([7, -9, 300], np.int32)),
               T((1, 3), "int8", 0.3, 4), T((1, 3), "int8", 1 / 256, -128), T((1, 3), "float32"),
               T((2,), "int32", data=np.array([1, 16], np.int32))]
    conv, pool, fc, softmax = S.Conv2DOptionsT(), S.Pool2DOptionsT(), S.FullyConnectedOptionsT(), S.SoftmaxOptionsT()
    softmax.beta = 1.0                  # the schema's default is 0 (LiteRT aborts on it)
    conv.padding, conv.strideH, conv.strideW, conv.fusedActivationFunction = S.Padding.SAME, 1, 1, ACT["relu6"]
    pool.padding, pool.strideH, pool.strideW, pool.filterHeight, pool.filterWidth = S.Padding.VALID, 2, 2, 2, 2
    fc.fusedActivationFunction = ACT["none"]
    ops = [Op(OP.QUANTIZE, [0], [1]), Op(OP.CONV_2D, [1, 2, 3], [4], OPTIONS.Conv2DOptions, conv),
           Op(OP.AVERAGE_POOL_2D, [4], [5], OPTIONS.Pool2DOptions, pool), Op(OP.RESHAPE, [5, 12], [6]),
           Op(OP.FULLY_CONNECTED, [6, 7, 8], [9], OPTIONS.FullyConnectedOptions, fc),
           Op(OP.SOFTMAX, [9], [10], OPTIONS.SoftmaxOptions, softmax), Op(OP.DEQUANTIZE, [10], [11])]
    return tflite_graph(tensors, ops, [0], [11]), s_in


@pytest.mark.parametrize("seed", range(3))
def test_a_float_edged_graph_runs_floats_as_litert_does_ties_included(seed):
    """The float input's QUANTIZE and the float output's DEQUANTIZE fold into the boundaries:
    run() takes and returns floats and equals LiteRT on the same floats -- including inputs
    exactly half a step apart, which TFLite's QUANTIZE rounds away from zero (ONNX's to even)."""
    model, s_in = float_edge_model(seed)
    rng = np.random.default_rng(seed)
    x = ((rng.integers(-60, 60, (8, 1, 4, 4, 2)) + 0.5) * s_in).astype(np.float32)   # every value a tie
    expected = np.stack([run_reference(model, sample) for sample in x])
    compiled = pytest_npu.compile(model, "u55-256")
    assert compiled.unsupported() == []
    assert compiled.graph.io["t0"].shape == (1, 4, 4, 2) and compiled.graph.io["t11"].dtype == "float32"
    (got,) = compiled.run(x).outputs.values()
    np.testing.assert_array_equal(got, expected)
    q = np.stack([compiled.graph.io["t0"].quant.quantize(sample) for sample in x])
    (ints,) = compiled.run_quantized(q).outputs.values()
    np.testing.assert_array_equal(((ints.astype(np.int64) + 128) / np.float32(256)).astype(np.float32), expected)


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_a_depth_multiplier_over_several_channels_equals_litert(seed, dtype):
    """DEPTHWISE_CONV_2D with depth_multiplier M on C > 1 channels (output c * M + m reads input c):
    imported as a grouped convolution (C groups of one input channel), on the NPU, bit-exact."""
    rng = np.random.default_rng(seed)
    c, m, k = int(rng.integers(2, 5)), int(rng.integers(2, 4)), int(rng.choice([1, 3]))
    cout = c * m
    w = rng.integers(-127, 128, (1, k, k, cout)).astype(np.int8)
    s_in, s_w = 0.05, rng.uniform(0.005, 0.02, cout).astype(np.float32)
    b_dtype = "int32" if dtype == "int8" else "int64"
    opts = S.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.depthMultiplier = S.Padding.SAME, 1, 1, m
    opts.fusedActivationFunction = ACT[str(rng.choice(["none", "relu6"]))]
    z = 3 if dtype == "int8" else 0
    model = tflite_model(OP.DEPTHWISE_CONV_2D,
                         [T((1, 5, 6, c), dtype, s_in, z), T(w.shape, "int8", s_w, 0, w, 3),
                          T((cout,), b_dtype, np.float32(s_in) * s_w, 0, rng.integers(-900, 900, cout).astype(b_dtype))],
                         [T((1, 5, 6, cout), dtype, 0.2 if dtype == "int8" else 0.002, -z)],
                         OPTIONS.DepthwiseConv2DOptions, opts)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (4, 5, 6, c)).astype(dtype)
    compiled = pytest_npu.compile(model, "u55-256")
    assert compiled.unsupported() == []
    (got,) = compiled.run_quantized(x).outputs.values()
    np.testing.assert_array_equal(got, run_reference(model, x))
