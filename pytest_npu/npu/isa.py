"""The instruction set of the emulated NPU.

Each instruction is a small frozen dataclass; its docstring states its exact integer semantics,
which ``npu.kernels`` implements and ``tests/npu/reference.py`` re-implements plainly in int64.

Conventions shared by all instructions
--------------------------------------
* Operands are views into DRAM or SRAM (:class:`Operand`). Feature maps are HWC (NHWC without the
  batch: the emulator runs a batch of inferences in lock-step, one copy of memory per sample).
* ``deps`` lists indices of earlier instructions that must finish before this one starts; the
  emulator never reorders around them, and faults on a hazard the deps do not cover.
* ``layer`` names the graph node the instruction implements (per-layer reports group by it).
* Requantisation (:class:`Requant`) maps an accumulator to the output dtype:
  ``out = clamp(scale(acc) + ofm_zp, lo, hi)`` where ``scale`` follows the Requant's ``rule``
  (:data:`REQUANT_RULES`; "" = the target's default, :data:`DEFAULT_RULE`):

  - ``single`` / ``double``: TOSA RESCALE ``apply_scale_32(v, multiplier[c], shift[c])`` =
    ``(v * multiplier + round) >> shift`` (64-bit product, arithmetic shift) with
    ``round = 1 << (shift - 1)``, and for ``double`` with ``shift > 31`` also
    ``round += 1 << 30`` if ``v >= 0`` else ``round -= 1 << 30``. 15-bit multipliers (int16
    activations, 48-bit accumulators) select ``apply_scale_16`` (single rounding). ``double``
    equals TFLite's ``MultiplyByQuantizedMultiplier`` (gemmlowp's doubling high multiply, then a
    rounding divide by a power of two) for every int32 accumulator: ``npu.fixedpoint`` computes
    the latter, and ``tests/npu`` checks the two against each other and against LiteRT.
  - ``float``: LiteRT's reference fully-connected: ``multiplier`` is the 53-bit mantissa of the
    real scale (``scale = multiplier * 2**-shift`` exactly, an IEEE double); ``v * scale`` is
    rounded to double precision, then to an integer half away from zero (C ``round``).

  ``lo``/``hi`` implement fused ReLU/ReLU6/Clip and the output dtype's saturation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32}
# float32 tensors (the parts of a model its quantiser left in float) live in DRAM and only HOST
# instructions touch them; every NPU engine, DMA included, refuses a float operand.
FLOAT_DTYPES = frozenset({"float32"})
INTEGER_DTYPES = tuple(d for d in DTYPES if d not in FLOAT_DTYPES)
MEMORIES = ("dram", "sram")

# A target's ``rounding`` (the default rule of its requantisations) and the rules a Requant can
# carry; "tflite" reproduces LiteRT's reference kernels op by op: the compiler picks each
# instruction's rule and parameters (double rounding for most, float for fully-connected layers,
# TFLite's own average pool, softmax and activation tables).
ROUNDINGS = ("single", "double", "tflite")
REQUANT_RULES = ("single", "double", "float")
DEFAULT_RULE = {"single": "single", "double": "double", "tflite": "double"}

# Names a target lists under [isa].operations. Instructions map to them via ``operation``.
OPERATIONS = frozenset({
    "dma", "conv2d", "depthwise_conv2d", "fully_connected", "matmul", "max_pool", "avg_pool",
    "add", "sub", "mul", "min", "max", "lut", "rescale", "resize",
})


def dtype_range(dtype: str) -> tuple[int, int]:
    """Saturation range of an integer dtype (float32 has none: it is never saturated)."""
    info = np.iinfo(DTYPES[dtype])  # type: ignore[type-var]  # callers ask integer dtypes only
    return int(info.min), int(info.max)


@dataclass(frozen=True)
class Operand:
    """A tensor view: ``shape`` elements of ``dtype`` at byte ``offset`` of ``mem``.

    ``strides`` are byte strides per dimension (``None`` = contiguous, row-major). Strides let
    a CONCAT write into a channel slice of a larger tensor and a DMA move a row stripe with halo,
    without copies: concat and pad are addressing, not instructions.
    """

    mem: str
    offset: int
    shape: tuple[int, ...]
    dtype: str
    strides: tuple[int, ...] | None = None
    name: str = ""

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of data the operand holds (not its strided extent)."""
        return self.size * self.itemsize

    def byte_strides(self) -> tuple[int, ...]:
        if self.strides is not None:
            return self.strides
        out, step = [], self.itemsize
        for dim in reversed(self.shape):
            out.append(step)
            step *= dim
        return tuple(reversed(out))

    def extent(self) -> tuple[int, int]:
        """Half-open byte range ``[lo, hi)`` the view can touch (used for bounds and hazards)."""
        if self.size == 0:
            return self.offset, self.offset
        last = sum((d - 1) * s for d, s in zip(self.shape, self.byte_strides()))
        return self.offset, self.offset + last + self.itemsize

    def describe(self) -> str:
        label = f"{self.name} " if self.name else ""
        return f"{label}{self.mem}[{self.offset}:+{self.nbytes}] {self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class Requant:
    """Per-channel (len C) or per-tensor (len 1) scale parameters, output clamp and the rounding
    ``rule`` (see the module docstring; "" = the target's ``rounding``)."""

    multiplier: tuple[int, ...]
    shift: tuple[int, ...]
    ofm_zp: int
    lo: int
    hi: int
    rule: str = ""


@dataclass(frozen=True)
class Instruction:
    """Base class. Subclasses set ``opcode`` and ``unit`` ("dma", "mac", "elementwise", "lut", "host")."""

    opcode: ClassVar[str] = "?"
    unit: ClassVar[str] = "?"

    @property
    def operation(self) -> str:
        """The name checked against the target's supported operations."""
        return self.opcode.lower()

    def required_operations(self) -> tuple[str, ...]:
        """Every target operation the instruction needs (one, except for composite ones)."""
        return (self.operation,)

    def operands(self) -> dict[str, Operand]:
        """Named input operands followed by outputs, for bounds and hazard checks."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), Operand)}

    def reads(self) -> dict[str, Operand]:
        return {k: v for k, v in self.operands().items() if k not in self.writes()}

    def writes(self) -> dict[str, Operand]:
        return {k: v for k, v in self.operands().items() if k in ("dst", "ofm")}

    def engine(self) -> str:
        """Engine the instruction occupies, e.g. ``dma1`` or ``core0.mac``."""
        if self.unit == "dma":
            return f"dma{getattr(self, 'channel', 0)}"
        if self.unit == "host":
            return "host"
        return f"core{getattr(self, 'core', 0)}.{self.unit}"


@dataclass(frozen=True)
class DmaIn(Instruction):
    """Copy ``src`` (DRAM) to ``dst`` (SRAM) element by element: ``dst[i] = src[i]``.

    Shapes must be equal; either side may be strided (2-D/3-D blocks: row stripes with halo,
    channel slices). No arithmetic, no conversion. ``encoded_bytes`` > 0: ``src`` is a weight
    (or scale/bias) block the target stores encoded; the DMA reads that many bytes of the encoded
    stream and the weight decoder delivers ``src`` unchanged (timing and energy count the encoded
    bytes, the copy is exact).
    """

    src: Operand
    dst: Operand
    channel: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    encoded_bytes: int = 0
    opcode: ClassVar[str] = "DMA_IN"
    unit: ClassVar[str] = "dma"

    @property
    def operation(self) -> str:
        return "dma"


@dataclass(frozen=True)
class DmaOut(Instruction):
    """Copy ``src`` (SRAM) to ``dst`` (DRAM): ``dst[i] = src[i]``; same rules as DMA_IN."""

    src: Operand
    dst: Operand
    channel: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "DMA_OUT"
    unit: ClassVar[str] = "dma"

    @property
    def operation(self) -> str:
        return "dma"


@dataclass(frozen=True)
class Conv2D(Instruction):
    """TOSA CONV2D then RESCALE.

    ifm (IH, IW, Cin) int8/int16; weights (KH, KW, Cin, Cout) int8; bias (Cout,) int32;
    ofm (OH, OW, Cout) int8/int16. For each (oy, ox, co):
    ``acc = bias[co] + sum_{ky,kx,ci} (ifm[iy,ix,ci] - ifm_zp) * (w[ky,kx,ci,co] - weight_zp)``
    with ``iy = oy*sy - pad_top + ky*dy``, ``ix = ox*sx - pad_left + kx*dx``; positions outside
    the ifm contribute 0 (padding equals the zero point). acc is exact (int32 for int8 ifm, int48
    for int16), then ``ofm = requant(acc)`` per output channel. ``padding`` = (top, bottom, left,
    right). A tile of a larger conv is the same instruction on row-sliced operands with the
    padding of that tile's edges.
    """

    ifm: Operand
    weights: Operand
    bias: Operand
    ofm: Operand
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ifm_zp: int = 0
    weight_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "CONV2D"
    unit: ClassVar[str] = "mac"


@dataclass(frozen=True)
class DepthwiseConv2D(Instruction):
    """TOSA DEPTHWISE_CONV2D (channel multiplier 1) then RESCALE.

    weights (KH, KW, C); ``acc[oy,ox,c] = bias[c] + sum_{ky,kx} (ifm[iy,ix,c] - ifm_zp) *
    (w[ky,kx,c] - weight_zp)``; indexing and padding as CONV2D.
    """

    ifm: Operand
    weights: Operand
    bias: Operand
    ofm: Operand
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ifm_zp: int = 0
    weight_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "DEPTHWISE_CONV2D"
    unit: ClassVar[str] = "mac"


@dataclass(frozen=True)
class FullyConnected(Instruction):
    """ifm (M, K) activations x constant weights (K, N) int8 + bias (N,) int32, then RESCALE.

    ``acc[m,n] = bias[n] + sum_k (ifm[m,k] - ifm_zp) * (w[k,n] - weight_zp)``.
    """

    ifm: Operand
    weights: Operand
    bias: Operand
    ofm: Operand
    ifm_zp: int = 0
    weight_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "FULLY_CONNECTED"
    unit: ClassVar[str] = "mac"


@dataclass(frozen=True)
class MatMul(Instruction):
    """Two activations: a (M, K) x b (K, N), then RESCALE (per-tensor).

    ``acc[m,n] = sum_k (a[m,k] - a_zp) * (b[k,n] - b_zp)``.
    """

    a: Operand
    b: Operand
    ofm: Operand
    a_zp: int = 0
    b_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "MATMUL"
    unit: ClassVar[str] = "mac"


@dataclass(frozen=True)
class Pool(Instruction):
    """POOL over kernel windows of ifm (IH, IW, C) -> ofm (OH, OW, C).

    ``kind="max"``: max of the raw integers in the window, padding ignored, then
    ``clamp(x - ifm_zp + ofm_zp, lo, hi)`` when requant scales are equal (the compiler only emits
    max pools with equal in/out scale; ``requant`` must be None).
    ``kind="avg"``: ``acc = sum (ifm - ifm_zp)`` over the window (padding counts as zero point,
    i.e. count_include_pad), then ``ofm = requant(acc)`` where the multiplier already contains
    ``1 / (KH*KW)`` and the scale ratio.
    ``kind="avg"`` with ``divide=True`` (TFLite's AVERAGE_POOL_2D; input and output share scale
    and zero point): ``acc = sum ifm`` of the raw integers over the window's positions inside the
    ifm, ``n`` their count (padding is excluded), ``q = (acc + n//2) / n`` if ``acc > 0`` else
    ``(acc - n//2) / n`` (C division, truncating: round half away from zero), ``ofm =
    clamp(q, requant.lo, requant.hi)``; the requant's multiplier and shift are unused.
    """

    ifm: Operand
    ofm: Operand
    kind: str = "max"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ifm_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    divide: bool = False
    opcode: ClassVar[str] = "POOL"
    unit: ClassVar[str] = "elementwise"

    @property
    def operation(self) -> str:
        return f"{self.kind}_pool"


@dataclass(frozen=True)
class Elementwise(Instruction):
    """Quantised binary op, TFLite/TOSA style, ``op`` in add|sub|mul|min|max.

    b broadcasts if its shape is (1,) or (C,) against a (..., C). For add/sub/min/max:
    ``a' = scale((a - a_zp) << left_shift, a_multiplier, a_shift)`` and likewise b', then
    ``acc = a' op b'``, where ``scale`` is apply_scale_32 with the rounding of ``requant.rule``
    (TFLite's add: double, i.e. ``MultiplyByQuantizedMultiplierSmallerThanOneExp``). For mul: ``acc = (a - a_zp) * (b - b_zp)`` (a/b multipliers unused).
    Finally ``ofm = requant(acc)`` (per-tensor). ``left_shift`` is 20 for int8 (TFLite's add) and
    at most 15 for int16, so ``(x - zp) << left_shift`` stays inside int32 as apply_scale_32 requires.
    """

    a: Operand
    b: Operand
    ofm: Operand
    op: str = "add"
    a_zp: int = 0
    b_zp: int = 0
    a_multiplier: int = 1 << 30
    a_shift: int = 30
    b_multiplier: int = 1 << 30
    b_shift: int = 30
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    left_shift: int = 20
    opcode: ClassVar[str] = "ELEMENTWISE"
    unit: ClassVar[str] = "elementwise"

    @property
    def operation(self) -> str:
        return self.op


@dataclass(frozen=True)
class Lut(Instruction):
    """int8 table lookup: ``ofm[i] = table[ifm[i] + 128]`` with a 256-entry int8 table.

    Sigmoid, Tanh, HardSwish, GELU... become LUTs: the compiler evaluates the float function on
    the 256 dequantised inputs and quantises the results with the output parameters.
    """

    ifm: Operand
    ofm: Operand
    table: tuple[int, ...] = ()
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "LUT"
    unit: ClassVar[str] = "lut"


@dataclass(frozen=True)
class Rescale(Instruction):
    """TOSA RESCALE: ``ofm = requant(ifm - ifm_zp)``; changes scale, zero point or dtype
    (int8 <-> int16); per-channel along the last axis when the requant has C entries."""

    ifm: Operand
    ofm: Operand
    ifm_zp: int = 0
    requant: Requant | None = None
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "RESCALE"
    unit: ClassVar[str] = "elementwise"


@dataclass(frozen=True)
class Resize(Instruction):
    """Resize (H, W, C) -> (OH, OW, C), input and output sharing quantisation parameters.

    ``mode="nearest"`` with ``size == ()``: upsampling by integer factors,
    ``ofm[y, x, c] = ifm[y // sy, x // sx, c]`` (``scale = (sy, sx)``).
    Otherwise ``size = (OH, OW)`` with TFLite's coordinate rules, per axis of input size ``I`` and
    output size ``O``: ``ratio = (I - 1) / (O - 1)`` if ``align_corners`` and ``O > 1`` else ``I / O``
    (float32).
    ``mode="nearest"``: ``src = min(round(o * ratio) if align_corners else floor((o + h) * ratio), I - 1)``
    with ``h = 0.5`` if ``half_pixel_centers`` else 0 (then also ``max(src, 0)``); round is half
    away from zero.
    ``mode="bilinear"`` (TFLite's integer kernel, 10-bit fixed point): ``s10 = (1024 * I + O // 2) // O``
    (``(1024 * (I-1) + (O-1) // 2) // (O-1)`` with align_corners); ``p = o * s10`` (``+ s10 // 2 - 512``
    with half_pixel_centers); ``i0 = max(p // 1024, 0)``, ``i1 = min((p + 1023) // 1024, I - 1)``
    (C division); the four taps weighted ``(1024 - (p - 1024 * i0))`` / ``(p - 1024 * i0)`` per axis sum
    to ``v20``; ``ofm = (v20 + 2**19) / 2**20`` if ``v20 > 0`` else ``(v20 - 2**19) / 2**20`` (C division).
    """

    ifm: Operand
    ofm: Operand
    scale: tuple[int, int] = (2, 2)
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    mode: str = "nearest"
    size: tuple[int, ...] = ()
    align_corners: bool = False
    half_pixel_centers: bool = False
    opcode: ClassVar[str] = "RESIZE"
    unit: ClassVar[str] = "elementwise"


@dataclass(frozen=True)
class Softmax(Instruction):
    """TFLite's int8 softmax over the last axis of ``ifm`` (rows of C values) -> int8 ``ofm``.

    ``exp_table`` holds 256 Q0.31 values: ``exp_table[255 + d]`` for ``d = x - max(row)`` in
    [-255, 0] (0 where ``d < diff_min``). Per row: ``sum = sum_c RoundingDivideByPOT(e_c, 12)``
    (Q12.19, int32), ``(r, n) = GetReciprocal(sum, 12)`` (gemmlowp Newton-Raphson, Q0.31 and
    the bits over unit), ``ofm_c = clamp(RoundingDivideByPOT(SRDHM(r, e_c), n + 23) - 128)``, and
    ``-128`` where ``d < diff_min`` (``npu.fixedpoint``). The compiler fills the table from
    the layer's beta and input scale exactly as TFLite's ``PreprocessSoftmaxScaling`` and
    ``exp_on_negative_values`` do, so every output equals LiteRT's reference kernel.
    With a ``requant`` the output stage is TFLite's int16 one without its offset,
    ``p_c = RoundingDivideByPOT(SRDHM(r, e_c), n + 15)`` (probability in units of 2**-16), then
    ``ofm = requant(p)``: any int8/int16 output quantisation (onnxruntime writes scale 1/255).

    One instruction stands for the sequence an Ethos-U runs (row max, subtract, exp LUT with
    32-bit entries, row sum, count-leading-zeros and Newton-Raphson reciprocal in element-wise
    steps, multiply, shift): it needs the target's ``lut``, ``max``, ``sub``, ``add`` and ``mul``.
    """

    ifm: Operand
    ofm: Operand
    exp_table: tuple[int, ...] = ()
    requant: Requant | None = None
    # int16 -> int16 instead: TFLite's SoftmaxInt16 (exp and 1/(1+x) tables with interpolation,
    # output Q0.15) with its Prepare's (input_multiplier, input_left_shift); exp_table stays empty
    int16_scaling: tuple[int, ...] = ()
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "SOFTMAX"
    unit: ClassVar[str] = "elementwise"
    STEPS: ClassVar[tuple[str, ...]] = ("max", "sub", "lut", "add", "mul")
    # the shape of that sequence, for the cost model (an estimate of Vela's int8 softmax graph):
    # passes over every element (row max, subtract + exp lookup, row sum, scale and shift) and
    # per-row steps (count leading zeros, shifts, three Newton-Raphson iterations of four ops)
    FULL_PASSES: ClassVar[int] = 4
    ROW_STEPS: ClassVar[int] = 22

    @property
    def operation(self) -> str:
        return "lut"

    def required_operations(self) -> tuple[str, ...]:
        return self.STEPS


@dataclass(frozen=True)
class HostOp(Instruction):
    """Hand tensors to the host CPU: ``outputs = npu.host.execute(op, attrs, inputs)``.

    Operands live in DRAM. The host dequantises, computes in float (numpy) and quantises with
    the parameters in ``attrs``; ``reason`` says why the NPU could not run it (shown in reports).
    Cost: the target's ``host_overhead_us`` plus ``npu.host.count_ops(...)`` over
    ``host_ops_per_second``.
    """

    op: str
    inputs: tuple[Operand, ...]
    outputs: tuple[Operand, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "HOST"
    unit: ClassVar[str] = "host"

    @property
    def operation(self) -> str:
        return "host"

    def operands(self) -> dict[str, Operand]:
        named = {f"in{i}": o for i, o in enumerate(self.inputs)}
        named.update({f"out{i}": o for i, o in enumerate(self.outputs)})
        return named

    def writes(self) -> dict[str, Operand]:
        return {f"out{i}": o for i, o in enumerate(self.outputs)}

    __hash__ = object.__hash__


INSTRUCTIONS: dict[str, type[Instruction]] = {
    cls.opcode: cls for cls in (DmaIn, DmaOut, Conv2D, DepthwiseConv2D, FullyConnected, MatMul,
                                Pool, Elementwise, Lut, Rescale, Resize, Softmax, HostOp)
}
