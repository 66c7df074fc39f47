"""A small conv-heavy network built by hand as an NPU program, and the same network as ONNX QDQ.

The emulator's end-to-end workload for tests (tests/npu) and benchmarks (benchmarks/test_bench_emulator.py):
no importer or compiler in between, so a fault here is the emulator's. The network (NHWC, int8,
per-channel weights): 3x3 CONV2D + ReLU, 3x3 DEPTHWISE + ReLU, 2x2 max POOL, FULLY_CONNECTED to
10 logits. Its parameters come from a seeded random float network whose activation scales are
calibrated on a random input (nothing is hard-coded), quantised the way onnxruntime's static QDQ
quantiser would (symmetric per-channel int8 weights, int32 bias at ``s_in * s_w``). The program
DMAs weights and the input into SRAM, splits the convolutions over the target's cores by output
channel (strided channel-slice operands), and DMAs the logits out.

:func:`conv_qdq_model` builds the same network as an ONNX QDQ model (int8 NCHW in, int8 out) so the
emulator can be compared with onnxruntime.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from pytest_npu.npu.isa import Conv2D, DepthwiseConv2D, DmaIn, DmaOut, FullyConnected, Operand, Pool, Requant
from pytest_npu.npu.program import Program, ProgramBuilder
from pytest_npu.npu.requant import requant_for


@dataclass
class ConvNet:
    """Quantised parameters of the network (IR layouts: HWIO conv, HWC depthwise, (K, N) fc)."""

    height: int
    width: int
    cin: int
    cmid: int
    classes: int
    x_scale: float
    x_zp: int
    w1: np.ndarray          # (3, 3, cin, cmid) int8
    w1_scale: np.ndarray    # (cmid,)
    b1: np.ndarray          # (cmid,) int32
    y1_scale: float
    y1_zp: int
    w2: np.ndarray          # (3, 3, cmid) int8
    w2_scale: np.ndarray
    b2: np.ndarray
    y2_scale: float
    y2_zp: int
    w3: np.ndarray          # (H/2 * W/2 * cmid, classes) int8, rows in HWC order
    w3_scale: np.ndarray
    b3: np.ndarray
    y3_scale: float
    y3_zp: int

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.integers(-128, 128, size=(batch, self.height, self.width, self.cin), dtype=np.int8)


def _per_channel_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 (zero point 0), as onnxruntime's per-channel QDQ weights."""
    other = tuple(a for a in range(w.ndim) if a != axis)
    scale = np.maximum(np.abs(w).max(axis=other), 1e-8) / 127.0
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8), scale.astype(np.float32)


def make_conv_net(size: int = 32, cin: int = 16, cmid: int = 32, classes: int = 10, seed: int = 0) -> ConvNet:
    """A seeded random network whose activation scales are calibrated on a random input."""
    from pytest_npu.npu.host import conv_float  # the host's float convolution, reused

    rng = np.random.default_rng(seed)
    x_scale, x_zp = 0.02, -5
    x = (rng.integers(-128, 128, size=(4, size, size, cin)) - x_zp) * x_scale
    w1f = rng.normal(0, np.sqrt(2 / (9 * cin)), size=(3, 3, cin, cmid))
    b1f = rng.normal(0, 0.05, size=cmid)
    w1, w1_scale = _per_channel_int8(w1f, 3)
    b1 = np.rint(b1f / (x_scale * w1_scale)).astype(np.int32)
    conv = dict(stride=(1, 1), dilation=(1, 1), padding=(1, 1, 1, 1))
    y1 = np.maximum(conv_float(x, w1 * w1_scale, b1 * x_scale * w1_scale, conv, False), 0)
    y1_scale, y1_zp = float(y1.max()) / 255, -128
    w2f = rng.normal(0, np.sqrt(2 / 9), size=(3, 3, cmid))
    b2f = rng.normal(0, 0.05, size=cmid)
    w2, w2_scale = _per_channel_int8(w2f, 2)
    b2 = np.rint(b2f / (y1_scale * w2_scale)).astype(np.int32)
    y2 = np.maximum(conv_float(y1, w2 * w2_scale, b2 * y1_scale * w2_scale, conv, True), 0)
    y2_scale, y2_zp = float(y2.max()) / 255, -128
    pooled = y2.reshape(4, size // 2, 2, size // 2, 2, cmid).max(axis=(2, 4)).reshape(4, -1)
    k = pooled.shape[1]
    w3f = rng.normal(0, np.sqrt(1 / k), size=(k, classes))
    w3, w3_scale = _per_channel_int8(w3f, 1)
    b3 = np.rint(rng.normal(0, 0.05, size=classes) / (y2_scale * w3_scale)).astype(np.int32)
    y3 = pooled @ (w3 * w3_scale) + b3 * y2_scale * w3_scale
    y3_scale = float(np.abs(y3).max()) / 127
    return ConvNet(size, size, cin, cmid, classes, x_scale, x_zp, w1, w1_scale, b1, y1_scale, y1_zp,
                   w2, w2_scale, b2, y2_scale, y2_zp, w3, w3_scale, b3, y3_scale, 0)


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, min(parts, n) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _channels(op: Operand, c0: int, c1: int) -> Operand:
    """A channel slice [c0, c1) of a contiguous (..., C) tensor: a strided view, no copy."""
    strides = op.byte_strides()
    return Operand(op.mem, op.offset + c0 * op.itemsize, (*op.shape[:-1], c1 - c0), op.dtype, strides,
                   f"{op.name}[..,{c0}:{c1}]")


def _requant_slice(rq: Requant, c0: int, c1: int) -> Requant:
    return Requant(rq.multiplier[c0:c1], rq.shift[c0:c1], rq.ofm_zp, rq.lo, rq.hi)


def build_conv_program(target, net: ConvNet | None = None) -> Program:
    """The network as a Program for ``target`` (convolutions split over its cores)."""
    net = net or make_conv_net()
    h, w, cin, cmid = net.height, net.width, net.cin, net.cmid
    b = ProgramBuilder(target.name, target.content_hash())
    x = b.input("x", (h, w, cin))
    logits = b.output("logits", (1, net.classes))
    consts = {name: b.constant(name, arr) for name, arr in (
        ("conv1.w", net.w1), ("conv1.b", net.b1), ("dw.w", net.w2), ("dw.b", net.b2),
        ("fc.w", net.w3), ("fc.b", net.b3))}
    on_chip = {name: b.sram(name + ".sram", op.shape, op.dtype) for name, op in consts.items()}
    x_s = b.sram("x.sram", (h, w, cin))
    y1 = b.sram("conv1.out", (h, w, cmid))
    y2 = b.sram("dw.out", (h, w, cmid))
    y3 = b.sram("pool.out", (h // 2, w // 2, cmid))
    out = b.sram("fc.out", (1, net.classes))
    channels = itertools.cycle(range(target.dma_channels))
    loads = {}
    loads["x"] = b.emit(DmaIn(x, x_s, channel=next(channels), layer="conv1"))
    for name in ("conv1.w", "conv1.b", "dw.w", "dw.b", "fc.w", "fc.b"):
        loads[name] = b.emit(DmaIn(consts[name], on_chip[name], channel=next(channels),
                                   layer=name.split(".")[0]))
    rq1 = requant_for(net.x_scale * net.w1_scale, net.y1_scale, net.y1_zp, "int8", clamp=(net.y1_zp, 127))
    rq2 = requant_for(net.y1_scale * net.w2_scale, net.y2_scale, net.y2_zp, "int8", clamp=(net.y2_zp, 127))
    rq3 = requant_for(net.y2_scale * net.w3_scale, net.y3_scale, net.y3_zp, "int8")
    conv_parts = []
    for core, (c0, c1) in enumerate(_split(cmid, target.cores)):
        conv_parts.append(b.emit(Conv2D(
            x_s, _channels(on_chip["conv1.w"], c0, c1), _channels(on_chip["conv1.b"], c0, c1),
            _channels(y1, c0, c1), padding=(1, 1, 1, 1), ifm_zp=net.x_zp, requant=_requant_slice(rq1, c0, c1),
            core=core, deps=(loads["x"], loads["conv1.w"], loads["conv1.b"]), layer="conv1")))
    dw_parts = []
    for core, (c0, c1) in enumerate(_split(cmid, target.cores)):
        dw_parts.append(b.emit(DepthwiseConv2D(
            _channels(y1, c0, c1), _channels(on_chip["dw.w"], c0, c1),
            _channels(on_chip["dw.b"], c0, c1), _channels(y2, c0, c1), padding=(1, 1, 1, 1),
            ifm_zp=net.y1_zp, requant=_requant_slice(rq2, c0, c1), core=core,
            deps=(*conv_parts, loads["dw.w"], loads["dw.b"]), layer="dw")))
    pool = b.emit(Pool(y2, y3, kind="max", kernel=(2, 2), stride=(2, 2), ifm_zp=net.y2_zp,
                       deps=tuple(dw_parts), layer="pool"))
    flat = Operand("sram", y3.offset, (1, y3.size), "int8", name="pool.out.flat")
    fc = b.emit(FullyConnected(flat, on_chip["fc.w"], on_chip["fc.b"], out, ifm_zp=net.y2_zp,
                               requant=rq3, deps=(pool, loads["fc.w"], loads["fc.b"]), layer="fc"))
    b.emit(DmaOut(out, logits, channel=0, deps=(fc,), layer="fc"))
    return b.build(model="hand-built conv network", layers=["conv1", "dw", "pool", "fc"])


def conv_qdq_model(net: ConvNet, batch: int | str = "N"):
    """The network as an ONNX QDQ model: int8 NCHW input, int8 logits (onnx.helper only)."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    h, w, cin, cmid, k = net.height, net.width, net.cin, net.cmid, net.classes
    init = [
        const("x_s", np.float32(net.x_scale)), const("x_z", np.int8(net.x_zp)),
        const("w1_q", net.w1.transpose(3, 2, 0, 1)), const("w1_s", net.w1_scale),
        const("w1_z", np.zeros(cmid, np.int8)),
        const("b1_q", net.b1), const("b1_s", (net.x_scale * net.w1_scale).astype(np.float32)),
        const("b_z", np.zeros(cmid, np.int32)),
        const("y1_s", np.float32(net.y1_scale)), const("y1_z", np.int8(net.y1_zp)),
        const("w2_q", net.w2.transpose(2, 0, 1)[:, None]), const("w2_s", net.w2_scale),
        const("b2_q", net.b2), const("b2_s", (net.y1_scale * net.w2_scale).astype(np.float32)),
        const("y2_s", np.float32(net.y2_scale)), const("y2_z", np.int8(net.y2_zp)),
        # fc rows are in HWC order; an NCHW Flatten yields CHW order: permute the rows to match.
        const("w3_q", net.w3.reshape(h // 2, w // 2, cmid, k).transpose(2, 0, 1, 3).reshape(-1, k)),
        const("w3_s", net.w3_scale), const("w3_z", np.zeros(k, np.int8)),
        const("b3_q", net.b3), const("b3_s", (net.y2_scale * net.w3_scale).astype(np.float32)),
        const("b3_z", np.zeros(k, np.int32)),
        const("y3_s", np.float32(net.y3_scale)), const("y3_z", np.int8(net.y3_zp)),
    ]
    n = helper.make_node
    nodes = [
        n("DequantizeLinear", ["x", "x_s", "x_z"], ["x_f"]),
        n("DequantizeLinear", ["w1_q", "w1_s", "w1_z"], ["w1_f"], axis=0),
        n("DequantizeLinear", ["b1_q", "b1_s", "b_z"], ["b1_f"], axis=0),
        n("Conv", ["x_f", "w1_f", "b1_f"], ["c1"], pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"]),
        n("QuantizeLinear", ["r1", "y1_s", "y1_z"], ["q1"]),
        n("DequantizeLinear", ["q1", "y1_s", "y1_z"], ["d1"]),
        n("DequantizeLinear", ["w2_q", "w2_s", "w1_z"], ["w2_f"], axis=0),
        n("DequantizeLinear", ["b2_q", "b2_s", "b_z"], ["b2_f"], axis=0),
        n("Conv", ["d1", "w2_f", "b2_f"], ["c2"], pads=[1, 1, 1, 1], group=cmid),
        n("Relu", ["c2"], ["r2"]),
        n("QuantizeLinear", ["r2", "y2_s", "y2_z"], ["q2"]),
        n("DequantizeLinear", ["q2", "y2_s", "y2_z"], ["d2"]),
        n("MaxPool", ["d2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        n("QuantizeLinear", ["p", "y2_s", "y2_z"], ["q3"]),
        n("DequantizeLinear", ["q3", "y2_s", "y2_z"], ["d3"]),
        n("Flatten", ["d3"], ["f"]),
        n("DequantizeLinear", ["w3_q", "w3_s", "w3_z"], ["w3_f"], axis=1),
        n("DequantizeLinear", ["b3_q", "b3_s", "b3_z"], ["b3_f"], axis=0),
        n("Gemm", ["f", "w3_f", "b3_f"], ["g"]),
        n("QuantizeLinear", ["g", "y3_s", "y3_z"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_program",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [batch, cin, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.INT8, [batch, k])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
