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
* Requantisation (:class:`Requant`) is TOSA RESCALE with ``scale32=True``:
  ``v = acc``; ``r = apply_scale_32(v, multiplier[c], shift[c], double_round)``;
  ``out = clamp(r + ofm_zp, lo, hi)`` where ``apply_scale_32`` is
  ``round = 1 << (shift - 1)``; with double rounding and ``shift > 31``,
  ``round += 1 << 30`` if ``v >= 0`` else ``round -= 1 << 30``; ``(v * multiplier + round) >> shift``
  (64-bit product, arithmetic shift). SINGLE_ROUND is round-half-up; DOUBLE_ROUND equals TFLite's
  default gemmlowp path. The target's ``rounding`` picks the mode; ``lo``/``hi`` implement fused
  ReLU/ReLU6/Clip and the output dtype's saturation.
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
    """Per-channel (len C) or per-tensor (len 1) TOSA RESCALE parameters plus output clamp."""

    multiplier: tuple[int, ...]
    shift: tuple[int, ...]
    ofm_zp: int
    lo: int
    hi: int


@dataclass(frozen=True)
class Instruction:
    """Base class. Subclasses set ``opcode`` and ``unit`` ("dma", "mac", "elementwise", "lut", "host")."""

    opcode: ClassVar[str] = "?"
    unit: ClassVar[str] = "?"

    @property
    def operation(self) -> str:
        """The name checked against the target's supported operations."""
        return self.opcode.lower()

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
    opcode: ClassVar[str] = "POOL"
    unit: ClassVar[str] = "elementwise"

    @property
    def operation(self) -> str:
        return f"{self.kind}_pool"


@dataclass(frozen=True)
class Elementwise(Instruction):
    """Quantised binary op, TFLite/TOSA style, ``op`` in add|sub|mul|min|max.

    b broadcasts if its shape is (1,) or (C,) against a (..., C). For add/sub/min/max:
    ``a' = apply_scale_32((a - a_zp) << left_shift, a_multiplier, a_shift)`` and likewise b', then
    ``acc = a' op b'``. For mul: ``acc = (a - a_zp) * (b - b_zp)`` (a/b multipliers unused).
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
    """Nearest-neighbour upsampling by integer factors: ``ofm[y, x, c] = ifm[y // sy, x // sx, c]``."""

    ifm: Operand
    ofm: Operand
    scale: tuple[int, int] = (2, 2)
    core: int = 0
    deps: tuple[int, ...] = ()
    layer: str = ""
    opcode: ClassVar[str] = "RESIZE"
    unit: ClassVar[str] = "elementwise"


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
                                Pool, Elementwise, Lut, Rescale, Resize, HostOp)
}
